"""benchmarks.yaml: the shipped file loads; every kind of mistake names its key."""

from __future__ import annotations

import re
import textwrap

import pytest

from robustbench_gcp.config import default_config_path, load_config
from robustbench_gcp.errors import ConfigError, UnknownNameError


def write(tmp_path, text):
    path = tmp_path / "bench.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_config_loads_and_is_typed():
    cfg = load_config()
    assert cfg.path == default_config_path().resolve()
    c = cfg.suite("imagenet-c")
    assert c.kind == "imagenet-c" and c.severities == (1, 2, 3, 4, 5) and len(c.corruptions) == 15
    assert c.corruptions[0] == "gaussian_noise" and c.corruptions[-1] == "jpeg_compression"
    alexnet = cfg.baseline("alexnet")
    assert alexnet.clean_error == 0.4348
    assert alexnet.error("fog", 5) == 0.945 and alexnet.error("saturate", 3) == 0.51174
    assert len(alexnet.imagenet_c) == 19
    assert cfg.model("resnet50-isqrt").published["mCE"] == 70.7
    # a URL model's download is checked by the sha256 prefix its torch.hub file name carries
    for name in ("resnet18-gap", "resnet50-gap", "deit-small-gap"):
        model = cfg.model(name)
        assert model.checkpoint.endswith(f"-{model.sha256}.pth") and len(model.sha256) == 8, model
    assert cfg.suite("imagenet-p").perturbations[-1] == "scale"
    pgd = next(a for a in cfg.suite("adversarial").attacks if a.attack == "pgd-l2")
    assert pgd.norm == "l2" and pgd.epsilons == (0.25, 0.5, 1.0) and pgd.params["steps"] == 10


def test_relative_checkpoint_paths_resolve_against_the_file(tmp_path):
    path = write(tmp_path, """
        models:
          mine: {arch: resnet18-gap, checkpoint: ckpt/r18.pth}
    """)
    assert load_config(path).model("mine").checkpoint == str((tmp_path / "ckpt" / "r18.pth").resolve())
    # through a symbolic link (as the package's resources/benchmarks.yaml is), against the file
    # it links to, as datasets.root and the error messages (it was the link's folder)
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "linked.yaml"
    link.symlink_to(path)
    assert load_config(link).model("mine").checkpoint == str((tmp_path / "ckpt" / "r18.pth").resolve())


@pytest.mark.parametrize(
    "text, message",
    [
        ("modles: {}\n", "bench.yaml: modles (line 1): unknown key 'modles'. Did you mean 'models'?"),
        ("suites:\n  c: {kind: imagenet-c, severities: [1, 7]}\n",
         "suites.c.severities[1] (line 2): should be 1..5, got 7"),
        ("suites:\n  c: {kind: imagenet-c, corruptions: [fgo]}\n",
         "suites.c.corruptions[0] (line 2): unknown corruption 'fgo'. Did you mean 'fog'?"),
        ("suites:\n  c: {kind: imagenet-c, severites: [1]}\n",
         "suites.c.severites (line 2): unknown key 'severites'. Did you mean 'severities'?"),
        # another kind's key, a command-line option: said so (helper-262: "Did you mean 'dataset'?")
        ("suites:\n  c: {kind: imagenet-c, attacks: []}\n",
         "suites.c.attacks (line 2): 'attacks' is a key of adversarial suites; this suite is of kind "
         "imagenet-c, whose keys are corruptions, dataset, kind, severities, storage_roundtrip"),
        ("suites:\n  c: {kind: clean, corrupted-dir: /x}\n",  # as the option is typed (helper-265)
         "suites.c.corrupted-dir (line 2): 'corrupted-dir' is no suite key but a command-line option "
         "(--corrupted-dir); this suite is of kind clean, whose keys are dataset, kind"),
        ("suites:\n  c: {kind: clean, corrupted_dir: /x}\n",
         "suites.c.corrupted_dir (line 2): 'corrupted_dir' is no suite key but a command-line option "
         "(--corrupted-dir); this suite is of kind clean, whose keys are dataset, kind"),
        ("suites:\n  c: {kind: imagenetc}\n",
         "suites.c.kind (line 2): unknown suite kind 'imagenetc'. Did you mean 'imagenet-c'?"),
        # eval ran the entry, report the kind of its name (helper-227)
        ("suites:\n  adversarial: {kind: imagenet-c, corruptions: [fog]}\n",
         "suites.adversarial.kind (line 2): a suite named 'adversarial' is of kind adversarial: the name "
         "stands for that kind in `report` and the suite flags; give this imagenet-c suite another name"),
        ("suites:\n  c: {kind: imagenet-c, storage_roundtrip: 'yes'}\n",
         "suites.c.storage_roundtrip (line 2): expected true or false, got str 'yes'"),
        ("models:\n  m: {arch: resnet50-iqsrt}\n",
         "models.m.arch (line 2): unknown architecture 'resnet50-iqsrt'. Did you mean 'resnet50-isqrt'?"),
        ("models:\n  m: {arch: resnet50-gap, sha256: abc}\n",
         "models.m.sha256 (line 2): expected 8 to 64 hexadecimal digits (a full SHA-256 or its prefix), got "
         "'abc'"),
        # never used: --checkpoint replaces it, and without one nothing is read (helper-227)
        ("models:\n  m: {arch: resnet50-gap, sha256: deadbeef}\n",
         "models.m.sha256 (line 2): checks the entry's checkpoint file, and it gives none: add `checkpoint:` "
         "or drop sha256"),
        ("models:\n  m: {arch: resnet50-gap, sha256: 15991845}\n",  # fast-MPN-COV's file's prefix
         "models.m.sha256 (line 2): YAML reads 15991845 as a number, not hex digits: quote it"),
        ("models:\n  m: {arch: resnet50-gap, sha256: 4141}\n",  # too short as well: said at once
         "models.m.sha256 (line 2): YAML reads 4141 as a number, not hex digits: quote it (sha256: "
         "\"15991845\"); a prefix needs 8 or more hex digits"),
        ("models:\n  m: {arch: resnet50-gap, checkpoint: 's3://b/r50.pth'}\n",  # said 'without a network'
         "models.m.checkpoint (line 2): gcp-robust downloads http, https, ftp and file URLs, not "
         "s3://: copy"),
        ("models:\n  m: {arch: resnet50-gap, published: {top1: 0.7613}}\n",
         "models.m.published.top1 (line 2): published figures are percentages (76.13, not 0.7613), "
         "got 0.7613"),
        ("models:\n  m: {arch: resnet50-gap, published: {mCE: 0.927}}\n",
         "models.m.published.mCE (line 2): published figures are percentages (76.13, not 0.7613), got 0.927"),
        ("models:\n  m: {arch: resnet50-gap, published: {top1: 76.13, clean_error: 76.13}}\n",
         "models.m.published.clean_error (line 2): top1 76.13 and clean_error 76.13 disagree (the clean "
         "error is 100 - top1): give one"),
        ("models:\n  m: {arch: resnet50-gap, published: {top5: 930}}\n",
         "models.m.published.top5 (line 2): should be in [0.0, 100.0], got 930"),
        ("suites:\n  a: {kind: adversarial, attacks: [{attack: pgd-linf, epsilons: [-1]}]}\n",
         "suites.a.attacks[0].epsilons[0] (line 2): should be >= 0.0, got -1"),
        ("suites:\n  a: {kind: adversarial, attacks: [{attack: pgd-linf, epsilons: [0.1], steps: 1e3}]}\n",
         "suites.a.attacks[0].steps (line 2): expected an integer, got str '1e3' (YAML reads 1e3 as text: "
         "write 1000)"),
        ("suites:\n  a: {kind: adversarial, attacks: [{attack: pgd-linf, epsilons: [0.1], "
         "rel_stepsize: 25e-2}]}\n",
         "suites.a.attacks[0].rel_stepsize (line 2): expected a number, got str '25e-2' (YAML reads "
         "25e-2 as text: "
         "write 25.0e-2)"),
        ("suites:\n  a: {kind: adversarial, attacks: [{attack: pgd-linf, epsilons: [1/255, x]}]}\n",
         "suites.a.attacks[0].epsilons[1] (line 2): should be a number such as 0.5 or 2/255. Got 'x'"),
        ("suites:\n  a: {kind: adversarial, attacks: [{attack: fgsm, epsilons: [0.1], steps: 3}]}\n",
         "suites.a.attacks[0].steps (line 2): unknown key 'steps'"),
        ("baselines:\n  b: {imagenet_c: {fog: [0.1, 0.2]}}\n",
         "baselines.b.imagenet_c.fog (line 2): expected 5 errors (severities 1..5), got 2"),
        ("- just\n- a list\n", "top level: expected a mapping, got list"),
        # a CSV file given as --config: YAML reads it as one text, which the message held whole (helper-282)
        ("".join(f"{i},{i + 1},{i + 2}\n" for i in range(0, 60, 3)),
         "top level: expected a mapping, got str '0,1,2 3,4,5 6,7,8 9,10,11 12,13,14 15,16,17 18,19,20 21,22,"
         "... (169 characters)"),
        # names the command line cannot take (listed, then refused or misread by eval / report)
        ("suites:\n  'c,d': {kind: clean}\n",
         "suites.c,d (line 2): the name 'c,d' cannot be given on the command"),
        ("models:\n  'mine=v2': {arch: resnet18-gap}\n",
         "models.mine=v2 (line 2): the name 'mine=v2' cannot be"),
        ("models:\n  'x[seed=1]': {arch: resnet18-gap}\n", "the name 'x[seed=1]' cannot be given"),
        ("baselines:\n  'my base': {clean_error: 0.5}\n", "the name 'my base' cannot be given"),
        ("suites:\n  '': {kind: clean}\n", "the name '' cannot be given"),
        ("suites: []\n", "suites (line 1): expected a mapping, got list"),  # was read as no suites
        # false, [] or 0 where a mapping goes: read as an empty one ('unknown architecture m')
        ("models:\n  m: false\n", "models.m (line 2): expected a mapping, got bool False"),
        ("datasets: []\n", "datasets (line 1): expected a mapping, got list"),
        ("datasets:\n  cifar10: 0\n", "datasets.cifar10 (line 2): expected a mapping, got int 0"),
        ("suites:\n  c: false\n", "suites.c (line 2): expected a mapping, got bool False"),
        ("models:\n  resnet18-gap: {published: []}\n",
         "models.resnet18-gap.published (line 2): expected a mapping, got list"),
        ("baselines:\n  b: false\n", "baselines.b (line 2): expected a mapping, got bool False"),
        ("suites:\n  c: {kind: imagenet-c, corruptions: benchmrk}\n",
         "suites.c.corruptions (line 2): unknown corruption or subset 'benchmrk'. Did you mean 'benchmark'?"),
        ("suites:\n  c: {kind: imagenet-c, corruptions: 'fog,snow'}\n",
         "suites.c.corruptions (line 2): 'fog,snow' is one string: write a list, [fog, snow]"),
        ("models:\n  mine: {checkpoint: x.pth}\n",
         "models.mine.arch (line 2): unknown architecture 'mine' (no arch: given, so the entry's name is "
         "taken"),
        ("suites:\n  myc: {corruptions: [fog]}\n",
         "suites.myc.kind (line 2): unknown suite kind 'myc' (no kind: given, so the entry's name is taken "
         "as one)"),
    ],
)
def test_mistakes_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert str(tmp_path / "bench.yaml") in str(info.value)


def test_mistakes_name_the_line_of_their_key(tmp_path):
    """The key's line, or its entry's where the key is missing; keys a merge brings in have the
    anchor's lines, keys given beside the merge their own."""
    from robustbench_gcp.yaml_checks import key_lines

    text = """
        models:
          good: {arch: resnet18-gap}

          mine:
            checkpoint: x.pth
        suites:
          base: &base
            kind: imagenet-c
            severities: [1, 2]
          other:
            <<: *base
            severities:
              - 1
              - 9
    """
    with pytest.raises(ConfigError, match=r"bench.yaml: models.mine.arch \(line 5\): unknown architecture"):
        load_config(write(tmp_path, text))
    fixed = text.replace("checkpoint: x.pth", "arch: resnet18-gap")
    with pytest.raises(ConfigError, match=r"suites.other.severities\[1\] \(line 15\): should be 1..5, got 9"):
        load_config(write(tmp_path, fixed))
    import yaml

    lines = key_lines(yaml.compose(textwrap.dedent(fixed)))
    assert lines["suites.other.kind"] == 9 and lines["suites.other.severities"] == 13  # the anchor's, its own
    assert lines["models.good.arch"] == 3 and lines["suites.base.severities[1]"] == 10


def test_malformed_yaml_gives_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"malformed YAML \(line 3, column"):
        load_config(write(tmp_path, "models:\n  a: {arch: x\n  b: [1,\n"))


def test_a_key_given_twice_is_an_error_not_the_last_one(tmp_path):
    text = "suites:\n  c:\n    kind: imagenet-c\n    severities: [1]\n    severities: [3]\n"
    with pytest.raises(ConfigError, match=r": suites\.c\.severities \(line 5\): 'severities' is given "
                                          r"twice in one mapping \(first on line 4\)$"):  # its key path
        load_config(write(tmp_path, text))
    in_a_list = "suites:\n  c:\n    kind: imagenet-c\n    corruptions: [fog, {a: 1, a: 2}]\n"
    with pytest.raises(ConfigError, match=r": suites\.c\.corruptions\[1\]\.a \(line 4\): 'a' is given twice"):
        load_config(write(tmp_path, in_a_list))
    in_a_merge = "models:\n  a: &a {arch: x}\n  m:\n    <<: {arch: y, arch: z}\n"  # the merged keys are m's
    with pytest.raises(ConfigError, match=r": models\.m\.arch \(line 4\): 'arch' is given twice"):
        load_config(write(tmp_path, in_a_merge))
    # YAML's merge keys may still be overridden; 1 and '1' are two keys
    merged = ("suites:\n  a: &b {kind: imagenet-c, severities: [1]}\n  c:\n    <<: *b\n"
              "    severities: [3]\n")
    assert load_config(write(tmp_path, merged)).suite("c").severities == (3,)
    nested = ("suites:\n  a: &a {kind: imagenet-c, severities: [1], corruptions: [fog]}\n"
              "  b: &b\n    <<: *a\n    severities: [2]\n  c:\n    <<: *b\n    corruptions: [snow]\n")
    assert load_config(write(tmp_path, nested)).suite("c").severities == (2,)
    # two spellings of one value are one key, as the mapping would hold them
    for first, second in (("1", "01"), ("true", "yes"), ("1", "1.0"), ("null", "~")):
        with pytest.raises(ConfigError, match=rf"'{re.escape(second)}' is given twice"):
            load_config(write(tmp_path, f"models:\n  {first}: {{}}\n  {second}: {{}}\n"))
    with pytest.raises(ConfigError) as info:  # 1 and '1' are two keys: another error
        load_config(write(tmp_path, "models:\n  1: {}\n  '1': {}\n"))
    assert "given twice" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_names_suggest_the_closest():
    cfg = load_config()
    with pytest.raises(UnknownNameError, match="unknown suite 'imagenet_c'. Did you mean 'imagenet-c'"):
        cfg.suite("imagenet_c")
    with pytest.raises(UnknownNameError, match="Did you mean 'alexnet'"):
        cfg.baseline("alexnt")


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "models: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(path)


def test_a_published_clean_error_below_one_percent_is_taken(tmp_path):
    # a CIFAR-10 model errs on 0.8 % of the clean images: a percentage, not a fraction
    path = write(tmp_path, "models:\n  m: {arch: resnet18-gap, published: {clean_error: 0.8, top1: 99.2}}\n")
    assert load_config(path).model("m").published == {"clean_error": 0.8, "top1": 99.2}


def test_attack_epsilons_are_read_as_the_command_line_takes_them(tmp_path):
    """`8/255` was refused in benchmarks.yaml ("expected a number, got str") though --epsilons and
    the landscape's etas take it; PyYAML reads 1e-3 (no dot) as text too."""
    text = "suites:\n  a: {kind: adversarial, attacks: [{attack: pgd-linf, epsilons: [8/255, 1e-3, 0.01]}]}\n"
    (attack,) = load_config(write(tmp_path, text)).suite("a").attacks
    assert attack.epsilons == (0.001, 0.01, 8 / 255)  # in order, as reports show them


def test_a_file_of_baselines_alone_is_read(tmp_path):
    """`report --config base.yaml --baseline mine` reads a file that holds baselines only."""
    config = load_config(write(tmp_path, "baselines:\n  mine: {clean_error: 0.25}\n"))
    assert not config.models and not config.suites and config.baseline("mine").clean_error == 0.25


def test_control_characters_and_odd_names_are_one_line_errors(tmp_path):
    """A form feed (which some editors write) escaped as a traceback once the loader was built
    outside the error handling; an entry named 'r[x' sent the line lookup round for ever."""
    from pathlib import Path

    from robustbench_gcp.config import parse_config

    (tmp_path / "ff.yaml").write_text("models:\x0c\n")
    with pytest.raises(ConfigError, match=r"ff.yaml: malformed YAML.*unacceptable character #x000c"):
        load_config(tmp_path / "ff.yaml")
    with pytest.raises(ConfigError, match=r"the name 'r\[x' cannot be given on the command line"):
        parse_config({"models": {"r[x": {}}}, Path("b.yaml"))  # no lines: the walk ends


def test_aliases_of_aliases_do_not_exhaust_memory(tmp_path):
    """Eight levels of ten aliases, 300 bytes: 10**8 key paths, which the line lookup walked one by
    one (gigabytes, minutes; yaml.safe_load itself shares them) (security audit)."""
    from robustbench_gcp.yaml_checks import MAX_KEY_PATHS, key_lines

    levels = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for previous, name in zip("abcdefg", "bcdefgh", strict=True):
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    text = "\n".join([*levels, "models: *h"]) + "\n"
    import yaml

    assert len(key_lines(yaml.compose(text))) <= MAX_KEY_PATHS
    with pytest.raises(ConfigError, match=r"a \(line 1\): unknown key 'a'"):
        load_config(write(tmp_path, text))


def test_a_suite_given_its_kind_alone_gets_the_protocols_defaults(tmp_path):
    """benchmarks.yaml spells out every default, so an omitted key's default was never read: the
    papers' difficulty 1 for ImageNet-P, the 15 benchmark corruptions at severities 1-5, the
    landscape at the stem, ascending, on clean images."""
    from corruptions import PERTURBATION_SUBSETS, SUBSETS

    text = "suites:\n  p: {kind: imagenet-p}\n  c: {kind: imagenet-c}\n  l: {kind: landscape}\n"
    config = load_config(write(tmp_path, text))
    p, c, landscape = config.suite("p"), config.suite("c"), config.suite("l")
    assert p.difficulties == (1,) and p.perturbations == PERTURBATION_SUBSETS["test"]
    assert c.severities == (1, 2, 3, 4, 5) and c.corruptions == SUBSETS["benchmark"] and c.storage_roundtrip
    assert (landscape.at, landscape.direction, landscape.etas, landscape.corruptions) == ("stem", "ascent",
                                                                                        None, ())


@pytest.mark.parametrize("text", ["suites:\n  clean: &a\n    kind: clean\n    self: *a\n",
                                  "suites: &s\n  clean:\n    kind: clean\n  s1: *s\n"])
def test_a_recursive_anchor_is_a_one_line_error(tmp_path, text):
    """An alias inside the node it names: a RecursionError traceback from the key-line walk."""
    with pytest.raises(ConfigError, match=r"malformed YAML \(line \d\): an alias refers to a node that "
                                          r"holds it \(a recursive anchor\)$"):
        load_config(write(tmp_path, text))


def test_a_file_nested_too_deeply_or_too_large_is_a_one_line_error(tmp_path):
    """PyYAML's composer recursed into a RecursionError traceback; /dev/zero was read until memory
    ran out."""
    from robustbench_gcp.config import MAX_CONFIG_BYTES

    deep = "suites:\n  s1:\n    corruptions: " + "[" * 20000 + "]" * 20000 + "\n"
    with pytest.raises(ConfigError, match=r"malformed YAML: nested too deeply$"):
        load_config(write(tmp_path, deep))
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"c" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match=r"big\.yaml is over 16 MiB: not a benchmarks\.yaml"):
        load_config(big)


def test_a_configured_sha256_is_read_as_the_command_lines(tmp_path):
    """Spaces around it were refused in the configuration and taken by --sha256 (helper-227)."""
    from robustbench_gcp.fetch import expected_sha256

    path = tmp_path / "c.yaml"
    path.write_text("models:\n  m: {arch: demo-gap, checkpoint: w.pth, sha256: ' SHA256:ABCDEF12 '}\n")
    assert load_config(path).model("m").sha256 == expected_sha256(" SHA256:ABCDEF12 ") == "abcdef12"
