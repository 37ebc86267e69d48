"""Study config: loading, design expansion, validation messages, config hash, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.simulate import Scenario
from workbench.study.config import (
    AdviOptions,
    ConfigError,
    EMOptions,
    expand_design,
    load_study,
    parse_study,
)
from workbench.study.seeds import task_seed, task_streams

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

BASE = """
name = "demo"
seed = 7
replications = 3
[scenario]
n_components = 2
n_train = 100
n_test = 100
[design]
n_features = [1, 2]
overlap = [0.01, 0.05]
[[conditions]]
n_features = 1
weights = [0.3, 0.7]
[methods.em]
n_init = 2
[methods.advi]
start_at_em = true
"""


def test_design_is_crossed_last_factor_fastest_then_explicit_conditions() -> None:
    config = parse_study(BASE, source="demo.toml")
    got = [(s.n_features, s.overlap, s.weights) for s in config.conditions]
    assert got == [
        (1, 0.01, "balanced"),
        (1, 0.05, "balanced"),
        (2, 0.01, "balanced"),
        (2, 0.05, "balanced"),
        (1, 0.01, (0.3, 0.7)),
    ]
    assert all(s.n_components == 2 and s.n_train == 100 for s in config.conditions)
    assert config.n_tasks == 15
    assert config.output_dir == Path("reports/demo")
    assert config.methods["em"] == EMOptions(n_init=2)
    assert config.methods["advi"] == AdviOptions()
    assert list(config.methods) == ["em", "advi"]


def test_expand_design_without_factors_is_the_base_scenario() -> None:
    assert expand_design({"n_train": 5}, {}, []) == [{"n_train": 5}]
    assert expand_design({}, {"a": [1, 2]}, [{"a": 9}]) == [{"a": 1}, {"a": 2}, {"a": 9}]


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_studies_load(path: Path) -> None:
    config = load_study(path)
    assert config.name == path.stem
    assert config.conditions and config.methods
    assert all(isinstance(s, Scenario) for s in config.conditions)


def test_shipped_studies_exist() -> None:
    names = {p.stem for p in EXPERIMENTS.glob("*.toml")}
    assert {"quickstart", "separation", "sample_size", "misspecification"} <= names


BAD_CONFIGS = [
    # (what is wrong, TOML text, fragments the one-line message must hold)
    ("unknown top-level key", 'name = "x"\nrepetitions = 3\n[methods.em]\n', ["repetitions", "3"]),
    ("missing name", "[methods.em]\n", ["name is missing"]),
    ("bad name", 'name = "a b"\n[methods.em]\n', ["name", '"a b"', "letters, digits"]),
    ("negative seed", 'name = "x"\nseed = -1\n[methods.em]\n', ["seed = -1", "integer >= 0"]),
    (
        "zero replications",
        'name = "x"\nreplications = 0\n[methods.em]\n',
        ["replications = 0", "integer >= 1"],
    ),
    ("no methods", 'name = "x"\n', ["no methods", "[methods.em]"]),
    ("unknown method", 'name = "x"\n[methods.gibbs]\n', ["methods.gibbs", "em, bayes, advi"]),
    (
        "unknown method option",
        'name = "x"\n[methods.em]\nn_starts = 2\n',
        ["methods.em.n_starts", "2", "n_init"],
    ),
    (
        "bad method value",
        'name = "x"\n[methods.em]\ninit = "hc"\n',
        ["methods.em.init", '"hc"', "'kmeans'"],
    ),
    (
        "bad sampler",
        'name = "x"\n[methods.em]\n[methods.bayes]\nsampler = "advi"\n',
        ["methods.bayes.sampler", '"advi"', "'nutpie'"],
    ),
    (
        "target_accept of 1",
        'name = "x"\n[methods.em]\n[methods.bayes]\ntarget_accept = 1.0\n',
        ["methods.bayes.target_accept", "1.0", "a number in (0, 1)"],
    ),
    (
        "target_accept as a string",
        'name = "x"\n[methods.em]\n[methods.bayes]\ntarget_accept = "high"\n',
        ["methods.bayes.target_accept", '"high"', "a number in (0, 1)"],
    ),
    (
        "target_accept with a sampler that does not take it",
        'name = "x"\n[methods.em]\n[methods.bayes]\nsampler = "pymc"\ntarget_accept = 0.9\n',
        ["methods.bayes.target_accept", "0.9", "'auto' or 'nutpie' only", "'pymc'"],
    ),
    (
        "target_accept for ADVI",
        'name = "x"\n[methods.em]\n[methods.advi]\ntarget_accept = 0.9\n',
        ["methods.advi.target_accept", "0.9", "allowed keys"],
    ),
    (
        "unknown ordering",
        'name = "x"\n[methods.em]\n[methods.bayes]\nordering = "relabel"\n',
        ["methods.bayes.ordering", '"relabel"', "'transform'", "'sort'"],
    ),
    (
        "start at EM without EM",
        'name = "x"\n[methods.bayes]\n',
        ["methods.bayes.start_at_em", "[methods.em]"],
    ),
    (
        "unknown design factor",
        'name = "x"\n[design]\nseparation = [1, 2]\n[methods.em]\n',
        ["design.separation", "[1, 2]", "overlap"],
    ),
    (
        "design factor not a list",
        'name = "x"\n[design]\noverlap = 0.1\n[methods.em]\n',
        ["design.overlap", "0.1", "list"],
    ),
    (
        "bad scenario value",
        'name = "x"\n[design]\noverlap = [0.01, 2.0]\n[methods.em]\n',
        ["condition 1", "overlap=2.0", "must be a number"],
    ),
    (
        "unknown condition key",
        'name = "x"\n[[conditions]]\nk = 3\n[methods.em]\n',
        ["conditions[0].k", "n_components"],
    ),
    (
        "repeated condition",
        'name = "x"\n[design]\nn_train = [50, 50]\n[methods.em]\n',
        ["condition 1", "repeats condition 0"],
    ),
    (
        "bad keep_draws",
        'name = "x"\n[methods.em]\n[output]\nkeep_draws = "some"\n',
        ["output.keep_draws", '"some"', "'first'"],
    ),
    (
        "bad levels",
        'name = "x"\n[methods.em]\n[output]\nlevels = [0.5, 1.5]\n',
        ["output.levels", "[0.5, 1.5]", "(0, 1)"],
    ),
    ("not TOML", 'name = "x\n', ["not valid TOML"]),
    (
        "bad prior",
        'name = "x"\n[methods.em]\n[methods.bayes.priors]\nlkj_eta = -1.0\n',
        ["methods.bayes.priors", "lkj_eta", "-1.0"],
    ),
    (
        "unknown prior",
        'name = "x"\n[methods.em]\n[methods.advi.priors]\neta = 2.0\n',
        ["methods.advi.priors", "eta"],
    ),
]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_gives_one_line_naming_file_key_value_and_allowed(
    text: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_study(text, source="studies/bad.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("studies/bad.toml: ")
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such study file"):
        load_study(tmp_path / "absent.toml")


def test_config_hash_ignores_what_cannot_change_stored_results() -> None:
    reference = parse_study(BASE).config_hash()
    same = [
        BASE.replace("replications = 3", "replications = 50"),
        BASE + '[output]\ndir = "elsewhere"\nkeep_draws = "all"\nmax_errors = 0\n',
        BASE.replace('name = "demo"', 'name = "renamed"'),
    ]
    for text in same:
        assert parse_study(text).config_hash() == reference
    different = [
        BASE.replace("seed = 7", "seed = 8"),
        BASE.replace("n_init = 2", "n_init = 3"),
        BASE.replace("overlap = [0.01, 0.05]", "overlap = [0.01, 0.06]"),
        BASE + "[output]\nlevels = [0.9]\n",
        BASE.replace("[methods.advi]\nstart_at_em = true\n", ""),
    ]
    for text in different:
        assert parse_study(text).config_hash() != reference


def test_task_seeds_are_deterministic_distinct_and_63_bit() -> None:
    seeds = {(c, r): task_seed(7, c, r) for c in range(5) for r in range(40)}
    assert len(set(seeds.values())) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds.values())
    # recomputed in another order: identical
    assert all(task_seed(7, c, r) == s for (c, r), s in reversed(seeds.items()))
    assert task_seed(8, 0, 0) != task_seed(7, 0, 0)


def test_task_streams_reproduce_and_are_independent() -> None:
    a, b = task_streams(12345), task_streams(12345)
    np.testing.assert_array_equal(a.simulate.random(5), b.simulate.random(5))
    assert (a.em, a.bayes, a.advi) == (b.em, b.bayes, b.advi)
    assert len({a.em, a.bayes, a.advi}) == 3
    assert task_streams(12346).em != a.em


def test_truth_is_fixed_per_condition_by_default_and_random_on_request() -> None:
    from workbench.simulate import simulate
    from workbench.study.seeds import truth_seed

    fixed = parse_study(BASE, source="demo.toml")
    seeds = [s.truth_seed for s in fixed.conditions]
    assert seeds == [truth_seed(7, i) for i in range(len(seeds))]
    assert len(set(seeds)) == len(seeds)
    # Two replications of one condition share the truth but not the data.
    first, second = (simulate(fixed.conditions[0], rep) for rep in (1, 2))
    np.testing.assert_array_equal(first.truth.means, second.truth.means)
    assert not np.array_equal(first.X_train, second.X_train)

    random = parse_study(BASE.replace("replications = 3", 'replications = 3\ntruth = "random"'))
    assert all(s.truth_seed is None for s in random.conditions)
    assert random.config_hash() != fixed.config_hash()

    explicit = parse_study(BASE.replace("n_test = 100", "n_test = 100\ntruth_seed = 11"))
    assert {s.truth_seed for s in explicit.conditions} == {11}


def test_bad_truth_mode_is_one_line() -> None:
    expected = r'demo.toml: truth = "sometimes" is not allowed; use .fixed'
    with pytest.raises(ConfigError, match=expected):
        parse_study(BASE.replace("seed = 7", 'seed = 7\ntruth = "sometimes"'), source="demo.toml")


# One change per Scenario field that alters the data; `truth_seed` only picks the truth.
DATA_CHANGES: dict[str, tuple[dict, dict]] = {
    "n_components": ({}, {"n_components": 2}),
    "n_features": ({}, {"n_features": 3}),
    "n_train": ({}, {"n_train": 200}),
    "n_test": ({}, {"n_test": 200}),
    "weights": ({}, {"weights": "imbalanced"}),
    "covariance": ({}, {"covariance": "diag"}),
    "condition_number": ({"covariance": "full"}, {"covariance": "full", "condition_number": 5}),
    "overlap": ({}, {"overlap": 0.05}),
    "misspecification": ({}, {"misspecification": "student_t"}),
    "df": ({"misspecification": "student_t"}, {"misspecification": "student_t", "df": 3}),
    "skewness": ({"misspecification": "skew"}, {"misspecification": "skew", "skewness": 2}),
    "outlier_fraction": (
        {"misspecification": "outliers"},
        {"misspecification": "outliers", "outlier_fraction": 0.1},
    ),
}


def test_every_field_that_changes_the_data_changes_the_label() -> None:
    from dataclasses import fields

    assert set(DATA_CHANGES) == {f.name for f in fields(Scenario)} - {"truth_seed"}
    for name, (base, changed) in DATA_CHANGES.items():
        assert Scenario(**base).label() != Scenario(**changed).label(), name


def test_a_design_varying_only_n_test_is_two_conditions() -> None:
    text = BASE.replace("[design]\nn_features = [1, 2]\noverlap = [0.01, 0.05]\n", "").replace(
        "[[conditions]]\nn_features = 1\nweights = [0.3, 0.7]\n", "[design]\nn_test = [100, 200]\n"
    )
    config = parse_study(text, source="demo.toml")
    assert [c.n_test for c in config.conditions] == [100, 200]
    assert "test100" in config.conditions[0].label() and "test200" in config.conditions[1].label()


def test_priors_are_parsed_once_and_written_out_defaults_keep_the_hash() -> None:
    from workbench.bayes.priors import BayesPriors

    with_bayes = BASE + "[methods.bayes]\n"
    explicit = with_bayes + "[methods.bayes.priors]\nlkj_eta = 2.0\nmean_scale = 3.0\n"
    config = parse_study(explicit)
    assert config.methods["bayes"].priors == BayesPriors(mean_scale=3.0)
    assert config.to_dict()["methods"]["bayes"]["priors"] == {"mean_scale": 3.0}
    assert (
        parse_study(with_bayes + "[methods.bayes.priors]\nlkj_eta = 2.0\n").config_hash()
        == parse_study(with_bayes).config_hash()
    )


def test_defaults_come_from_the_modules_that_own_them() -> None:
    from workbench.bayes.options import DEFAULT_CHAINS, MCMC_SAMPLERS
    from workbench.em.options import INIT_METHODS, WORKBENCH_N_INIT
    from workbench.metrics import DEFAULT_LEVELS
    from workbench.study.config import BayesOptions, OutputOptions

    assert EMOptions().n_init == WORKBENCH_N_INIT
    assert BayesOptions().chains == DEFAULT_CHAINS
    assert OutputOptions().levels == DEFAULT_LEVELS
    bad_sampler = BASE + '[methods.bayes]\nsampler = "hmc"\n'
    with pytest.raises(ConfigError) as info:
        parse_study(bad_sampler, source="s.toml")
    assert ", ".join(repr(s) for s in MCMC_SAMPLERS) in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_study(BASE.replace("n_init = 2", 'init = "hc"'), source="s.toml")
    assert ", ".join(repr(s) for s in INIT_METHODS) in str(info.value)


def test_target_accept_is_parsed_and_its_default_keeps_the_hash() -> None:
    from workbench.bayes.options import DEFAULT_TARGET_ACCEPT
    from workbench.study.config import BayesOptions

    with_bayes = BASE + "[methods.bayes]\n"
    assert BayesOptions().target_accept == DEFAULT_TARGET_ACCEPT
    config = parse_study(with_bayes + "target_accept = 0.95\n")
    assert config.methods["bayes"].target_accept == 0.95
    assert config.to_dict()["methods"]["bayes"]["target_accept"] == 0.95
    assert config.config_hash() != parse_study(with_bayes).config_hash()
    # the default written out hashes as before the key existed
    default = parse_study(with_bayes + f"target_accept = {DEFAULT_TARGET_ACCEPT}\n")
    assert "target_accept" not in default.to_dict()["methods"]["bayes"]
    assert default.config_hash() == parse_study(with_bayes).config_hash()


def test_ordering_is_parsed_and_its_default_keeps_the_hash() -> None:
    from workbench.bayes.options import DEFAULT_ORDERING
    from workbench.study.config import BayesOptions

    with_bayes = BASE + "[methods.bayes]\n"
    assert BayesOptions().ordering == DEFAULT_ORDERING == "transform"
    config = parse_study(with_bayes + 'ordering = "sort"\n')
    assert config.methods["bayes"].ordering == "sort"
    assert config.to_dict()["methods"]["bayes"]["ordering"] == "sort"
    assert config.config_hash() != parse_study(with_bayes).config_hash()
    default = parse_study(with_bayes + f'ordering = "{DEFAULT_ORDERING}"\n')
    assert "ordering" not in default.to_dict()["methods"]["bayes"]
    assert default.config_hash() == parse_study(with_bayes).config_hash()
