"""The data that ships with the package: the accelerator catalog and the EAR country groups.

These tests read the files exactly as the installed package does (importlib.resources), so a
file left out of the package data, a typo in a label or a country code, or a figure without a
source fails here rather than in a cluster.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from importlib import resources
from typing import Any

import pytest
import yaml

from computegate.catalog import builtin_catalog
from computegate.engine.bands import eccn_band
from computegate.engine.state import ClusterState
from computegate.models import AcceleratorProfileSpec

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CONFIDENCE = {"confirmed", "derived", "unconfirmed"}
BANDS = {"3A090.a", "3A090.b", "none"}

# The chips the catalog has covered since its first version (the export-controlled and
# China-market parts named in the public material it was built from), with the profiles that
# carry each; frozen here so that no chip silently drops out of the catalog.
REFERENCE_CHIPS: dict[str, set[str]] = {
    "H100 SXM5 80GB": {"nvidia-h100-sxm5-80gb"},
    "H100 PCIe 80GB": {"nvidia-h100-pcie-80gb"},
    "H800 (SXM)": {"nvidia-h800-sxm"},
    "H200 SXM 141GB": {"nvidia-h200-sxm-141gb"},
    "H20 96GB": {"nvidia-h20-96gb"},
    "A100 (SXM4/PCIe 40/80GB)": {
        "nvidia-a100-sxm4-80gb",
        "nvidia-a100-sxm4-40gb",
        "nvidia-a100-pcie-80gb",
    },
    "A800 80GB": {"nvidia-a800-sxm4-80gb"},
    "L40S": {"nvidia-l40s"},
    "L40": {"nvidia-l40"},
    "L4": {"nvidia-l4"},
    "L20 48GB": {"nvidia-l20-48gb"},
    "B100": {"nvidia-b100"},
    "B200 (HGX)": {"nvidia-b200"},
    "GB200 (per Blackwell GPU; superchip has 2)": {"nvidia-gb200"},
    "GeForce RTX 4090": {"nvidia-geforce-rtx-4090"},
    "GeForce RTX 4090 D": {"nvidia-geforce-rtx-4090-d"},
    "A10 24GB": {"nvidia-a10-24gb"},
    "T4 16GB": {"nvidia-t4"},
    "V100 (SXM2/PCIe)": {
        "nvidia-v100-sxm2-16gb",
        "nvidia-v100-sxm2-32gb",
        "nvidia-v100-pcie-16gb",
        "nvidia-v100-pcie-32gb",
    },
    "Instinct MI300X": {"amd-instinct-mi300x"},
    "Instinct MI250X": {"amd-instinct-mi250x"},
    "Instinct MI210": {"amd-instinct-mi210"},
    "Gaudi 2": {"intel-gaudi2"},
    "Gaudi 3": {"intel-gaudi3"},
    "Ascend 910B": {"huawei-ascend-910b"},
}

# Node label values that public GPU Feature Discovery / AMD device-plugin output gives verbatim;
# each must resolve to its chip.
REFERENCE_LABELS = {
    ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"): "nvidia-h100-sxm5-80gb",
    ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB"): "nvidia-a100-sxm4-80gb",
    ("nvidia.com/gpu.product", "A100-SXM4-80GB"): "nvidia-a100-sxm4-80gb",
    ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"): "nvidia-a100-sxm4-40gb",
    ("nvidia.com/gpu.product", "A100-SXM4-40GB"): "nvidia-a100-sxm4-40gb",
    ("nvidia.com/gpu.product", "NVIDIA-A100-80GB-PCIe"): "nvidia-a100-pcie-80gb",
    ("nvidia.com/gpu.product", "Tesla-T4"): "nvidia-t4",
    ("amd.com/gpu.product-name", "AMD_Instinct_MI300X_OAM"): "amd-instinct-mi300x",
}

# Label values added or changed after an audit of the catalog (issue 17), each with the profile a
# node carrying it must resolve to through the engine's own label index.
NEW_OR_CHANGED_LABELS = {
    ("nvidia.com/gpu.product", "NVIDIA-GH200-144G-HBM3e"): "nvidia-gh200-144g-hbm3e",
    ("nvidia.com/gpu.product", "NVIDIA-GH200-480GB"): "nvidia-gh200-480gb",
    ("nvidia.com/gpu.product", "NVIDIA-GH200-120GB"): "nvidia-gh200-480gb",
    ("amd.com/gpu.product-name", "AMD_Instinct_MI325_OAM"): "amd-instinct-mi325x",
    ("nvidia.com/gpu.product", "NVIDIA-H800"): "nvidia-h800-sxm",
    ("nvidia.com/gpu.product", "NVIDIA-L20"): "nvidia-l20-48gb",
    ("nvidia.com/gpu.product", "NVIDIA-A30"): "nvidia-a30-24gb",
    ("nvidia.com/gpu.product", "NVIDIA-A40"): "nvidia-a40-48gb",
    ("nvidia.com/gpu.product", "NVIDIA-A800-SXM4-80GB"): "nvidia-a800-sxm4-80gb",
    ("nvidia.com/gpu.product", "NVIDIA-H100-PCIe"): "nvidia-h100-pcie-80gb",
    ("nvidia.com/gpu.product", "NVIDIA-H100-NVL"): "nvidia-h100-nvl",
    ("nvidia.com/gpu.product", "NVIDIA-H200-NVL"): "nvidia-h200-nvl",
    ("nvidia.com/gpu.product", "NVIDIA-H800-PCIe"): "nvidia-h800-pcie-80gb",
    ("nvidia.com/gpu.product", "NVIDIA-A800-80GB-PCIe"): "nvidia-a800-pcie-80gb",
    ("nvidia.com/gpu.product", "NVIDIA-H20-3e"): "nvidia-h20-3e-141gb",
    ("nvidia.com/gpu.product", "NVIDIA-A10G"): "nvidia-a10g",
    ("nvidia.com/gpu.product", "NVIDIA-B300-SXM6-AC"): "nvidia-b300",
    (
        "nvidia.com/gpu.product",
        "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",
    ): "nvidia-rtx-pro-6000-blackwell-server",
}

# Guessed label values that must not be in the catalog (no public source shows them).
UNSOURCED_LABELS = {
    ("amd.com/gpu.product-name", "AMD_Instinct_MI325X_OAM"),
    ("amd.com/gpu.product-name", "AMD_Instinct_MI355X_OAM"),
}

# The April 2025 license requirement for H20-class chips, as its thresholds were passed on to
# customers: DRAM >= 1,400 GB/s, or I/O >= 1,100 GB/s, or the two together >= 1,700 GB/s.
APRIL_2025_DRAM, APRIL_2025_IO, APRIL_2025_COMBINED = 1400, 1100, 1700
BANDWIDTH_COVERED = {"nvidia-h20-96gb", "nvidia-h20-3e-141gb", "huawei-ascend-910c"}
BANDWIDTH_NOT_COVERED = {
    "nvidia-t4",
    "nvidia-a10-24gb",
    "nvidia-a10g",
    "nvidia-l4",
    "nvidia-l40",
    "nvidia-l40s",
    "nvidia-l20-48gb",
    "nvidia-a40-48gb",
    "nvidia-geforce-rtx-4090",
    "nvidia-geforce-rtx-4090-d",
    "nvidia-v100-pcie-16gb",
}

# Text that points outside the repository (the project's private reference files) rather than at
# public material.
OUTSIDE_REFERENCES = ("shared/", "/work/", "CSV", "accelerators-sources", "export-controls.md")

# ISO 3166-1 alpha-2: the officially assigned codes.
_ISO_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
ISO_3166_1_ALPHA_2 = frozenset(_ISO_CODES.split())


@cache
def _load(name: str) -> Any:
    text = (resources.files("computegate") / "data" / name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _profiles() -> list[dict[str, Any]]:
    profiles: list[dict[str, Any]] = _load("accelerators.yaml")["profiles"]
    return profiles


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = _load("country_groups.yaml")["groups"]
    return groups


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = _load("country_groups.yaml")["rules"]
    return rules


def _ids(profiles: list[dict[str, Any]]) -> list[str]:
    return [str(profile.get("name")) for profile in profiles]


# ------------------------------------------------------------------ accelerator catalog


def test_the_catalog_ships_as_package_data_with_its_retrieval_date() -> None:
    catalog = _load("accelerators.yaml")
    assert catalog["catalog"]["retrieved"]
    assert catalog["catalog"]["note"]
    assert len(catalog["profiles"]) >= len(REFERENCE_CHIPS)


def test_every_entry_has_only_name_spec_sources_confidence_and_expected_band() -> None:
    for profile in _profiles():
        assert set(profile) <= {"name", "spec", "sources", "confidence", "expectedBand"}, profile["name"]
        assert {"name", "spec", "sources", "confidence"} <= set(profile), profile.get("name")


@pytest.mark.parametrize("profile", _profiles(), ids=_ids(_profiles()))
def test_every_profile_spec_validates_as_an_accelerator_profile_spec(profile: dict[str, Any]) -> None:
    AcceleratorProfileSpec.model_validate(profile["spec"])


@pytest.mark.parametrize("profile", _profiles(), ids=_ids(_profiles()))
def test_every_figure_of_a_profile_names_its_source(profile: dict[str, Any]) -> None:
    spec, sources = profile["spec"], profile["sources"]
    required = {"tpp", "performanceDensity", "productLabels", "memoryBandwidthGBps", "ioBandwidthGBps"}
    if "migComputeSlices" in spec:
        required.add("migComputeSlices")
    for field in required:
        assert isinstance(sources.get(field), str), f"{profile['name']}: no source for {field}"
        assert sources[field].strip(), f"{profile['name']}: empty source for {field}"


@pytest.mark.parametrize("profile", _profiles(), ids=_ids(_profiles()))
def test_every_profile_has_both_bandwidth_figures_with_a_source(profile: dict[str, Any]) -> None:
    spec = AcceleratorProfileSpec.model_validate(profile["spec"])
    assert spec.memory_bandwidth_gbps is not None and spec.memory_bandwidth_gbps > 0, profile["name"]
    assert spec.io_bandwidth_gbps is not None and spec.io_bandwidth_gbps > 0, profile["name"]
    for field in ("memoryBandwidthGBps", "ioBandwidthGBps"):
        assert str(profile["sources"].get(field, "")).strip(), f"{profile['name']}: no source for {field}"


@pytest.mark.parametrize("profile", _profiles(), ids=_ids(_profiles()))
def test_no_source_points_outside_the_repository(profile: dict[str, Any]) -> None:
    for field, text in profile["sources"].items():
        for marker in OUTSIDE_REFERENCES:
            assert marker not in str(text), f"{profile['name']}: sources.{field} mentions {marker!r}"


def test_the_catalog_file_cites_no_file_outside_the_repository() -> None:
    text = (resources.files("computegate") / "data" / "accelerators.yaml").read_text(encoding="utf-8")
    for marker in OUTSIDE_REFERENCES:
        assert marker not in text, marker


def _covered_by_april_2025(spec: AcceleratorProfileSpec) -> bool:
    dram, io = spec.memory_bandwidth_gbps or 0.0, spec.io_bandwidth_gbps or 0.0
    return dram >= APRIL_2025_DRAM or io >= APRIL_2025_IO or dram + io >= APRIL_2025_COMBINED


@pytest.mark.parametrize("name", sorted(BANDWIDTH_COVERED))
def test_h20_class_chips_meet_the_april_2025_bandwidth_thresholds(name: str) -> None:
    spec = builtin_catalog().profiles[name]
    assert _covered_by_april_2025(spec), name


def test_the_h20_has_its_published_4_tb_s_of_dram_bandwidth() -> None:
    spec = builtin_catalog().profiles["nvidia-h20-96gb"]
    assert spec.memory_bandwidth_gbps == 4000
    assert eccn_band(spec.tpp, spec.performance_density, spec.datacenter) is None


@pytest.mark.parametrize("name", sorted(BANDWIDTH_NOT_COVERED))
def test_inference_and_consumer_parts_stay_below_the_april_2025_thresholds(name: str) -> None:
    spec = builtin_catalog().profiles[name]
    assert not _covered_by_april_2025(spec), name


def test_t4_bandwidth_is_its_datasheet_figure() -> None:
    spec = builtin_catalog().profiles["nvidia-t4"]
    assert (spec.memory_bandwidth_gbps, spec.io_bandwidth_gbps) == (320, 32)


@pytest.mark.parametrize("profile", _profiles(), ids=_ids(_profiles()))
def test_a_profile_without_a_density_says_why_it_is_unknown(profile: dict[str, Any]) -> None:
    if "performanceDensity" not in profile["spec"]:
        reason = profile["sources"]["performanceDensity"].lower()
        assert "unknown" in reason or "omitted" in reason, profile["name"]


@pytest.mark.parametrize("profile", _profiles(), ids=_ids(_profiles()))
def test_every_profile_states_how_sure_its_figures_are(profile: dict[str, Any]) -> None:
    assert profile["confidence"] in CONFIDENCE
    if profile["confidence"] == "confirmed":
        text = " ".join(profile["sources"][field] for field in ("tpp",))
        assert "[unconfirmed]" not in text, f"{profile['name']} is confirmed but its TPP is not"


def test_profile_names_are_unique_dns_1123_labels() -> None:
    names = [profile["name"] for profile in _profiles()]
    assert [name for name, count in Counter(names).items() if count > 1] == []
    for name in names:
        assert len(name) <= 63 and DNS_1123_LABEL.match(name), name


def test_no_product_label_value_is_claimed_by_two_profiles() -> None:
    owners: dict[tuple[str, str], list[str]] = {}
    for profile in _profiles():
        for key, values in profile["spec"].get("productLabels", {}).items():
            for value in values:
                owners.setdefault((key, value), []).append(profile["name"])
    assert {label: names for label, names in owners.items() if len(names) > 1} == {}


def test_the_label_values_of_the_reference_material_resolve_to_their_chips() -> None:
    owner = {
        (key, value): profile["name"]
        for profile in _profiles()
        for key, values in profile["spec"].get("productLabels", {}).items()
        for value in values
    }
    for label, name in REFERENCE_LABELS.items():
        assert owner.get(label) == name, label


@pytest.mark.parametrize(("label", "name"), sorted(NEW_OR_CHANGED_LABELS.items()))
def test_a_node_with_a_new_or_changed_label_resolves_to_its_profile(
    label: tuple[str, str], name: str
) -> None:
    key, value = label
    profiles = ClusterState(builtin_catalog()).profiles
    assert [p.name for p in profiles.for_node_labels({key: value})] == [name], label
    if "migComputeSlices" in next(p for p in _profiles() if p["name"] == name)["spec"]:
        # GFD's MIG single strategy and time-slicing suffixes still resolve to the parent chip
        for suffixed in (f"{value}-SHARED", f"{value}-MIG-1g.24gb"):
            assert [p.name for p in profiles.for_node_labels({key: suffixed})] == [name], suffixed


@pytest.mark.parametrize(
    "name",
    [
        "nvidia-h800-sxm",
        "nvidia-l20-48gb",
        "nvidia-a30-24gb",
        "nvidia-a800-sxm4-80gb",
        "nvidia-h100-pcie-80gb",
        "nvidia-h100-nvl",
        "amd-instinct-mi325x",
        "nvidia-gh200-144g-hbm3e",
    ],
)
def test_labels_seen_on_real_nodes_are_no_longer_marked_unconfirmed(name: str) -> None:
    profile = next(p for p in _profiles() if p["name"] == name)
    assert "[unconfirmed]" not in profile["sources"]["productLabels"], name


def test_guessed_label_values_are_not_in_the_catalog() -> None:
    claimed = {
        (key, value)
        for profile in _profiles()
        for key, values in profile["spec"].get("productLabels", {}).items()
        for value in values
    }
    assert UNSOURCED_LABELS.isdisjoint(claimed)


def test_the_example_a100_profile_name_is_kept() -> None:
    a100 = next(p for p in _profiles() if p["name"] == "nvidia-a100-sxm4-80gb")
    labels = a100["spec"]["productLabels"]["nvidia.com/gpu.product"]
    assert labels == ["NVIDIA-A100-SXM4-80GB", "A100-SXM4-80GB"]
    assert a100["spec"]["migComputeSlices"] == 7


@pytest.mark.parametrize("model", sorted(REFERENCE_CHIPS))
def test_every_chip_of_the_reference_table_is_in_the_catalog(model: str) -> None:
    names = {profile["name"] for profile in _profiles()}
    assert REFERENCE_CHIPS[model] <= names, f"{model}: missing {REFERENCE_CHIPS[model] - names}"


@pytest.mark.parametrize(
    "profile",
    [p for p in _profiles() if "expectedBand" in p],
    ids=_ids([p for p in _profiles() if "expectedBand" in p]),
)
def test_the_computed_band_agrees_with_the_band_the_sources_state(profile: dict[str, Any]) -> None:
    assert profile["expectedBand"] in BANDS
    spec = AcceleratorProfileSpec.model_validate(profile["spec"])
    computed = eccn_band(spec.tpp, spec.performance_density, spec.datacenter)
    assert (computed or "none") == profile["expectedBand"], profile["name"]


def test_the_band_is_never_typed_into_a_spec() -> None:
    for profile in _profiles():
        assert not {"band", "eccn", "eccnBand"} & set(profile["spec"]), profile["name"]


def test_only_mig_capable_nvidia_chips_declare_mig_slices() -> None:
    for profile in _profiles():
        if "migComputeSlices" in profile["spec"]:
            assert profile["spec"]["resourceNames"] == ["nvidia.com/gpu"], profile["name"]
            assert profile["spec"]["migComputeSlices"] in {4, 7}, profile["name"]


def test_every_vendor_uses_its_device_plugin_resource_name() -> None:
    expected = {
        "NVIDIA": "nvidia.com/gpu",
        "AMD": "amd.com/gpu",
        "Intel": "habana.ai/gaudi",
        "Huawei": "huawei.com/Ascend910",
    }
    for profile in _profiles():
        spec = profile["spec"]
        assert expected[spec["vendor"]] in spec["resourceNames"], profile["name"]


# ------------------------------------------------------------------ country groups


def test_the_country_groups_carry_their_source_and_retrieval_date() -> None:
    data = _load("country_groups.yaml")
    assert "Supplement No. 1 to Part 740" in data["source"]
    assert data["retrieved"]
    assert len(data["sources"]) >= 2


def test_the_ear_groups_the_default_rules_need_are_all_present() -> None:
    assert {"A:5", "A:6", "D:1", "D:4", "D:5", "E:1", "E:2", "Macau"} <= set(_groups())


@pytest.mark.parametrize("group", sorted(_groups()))
def test_every_group_is_a_non_empty_sorted_list_of_iso_codes(group: str) -> None:
    codes = _groups()[group]
    assert codes, group
    assert all(isinstance(code, str) for code in codes), f"{group}: a code parsed as non-text (quote NO)"
    assert codes == sorted(set(codes)), f"{group} is not sorted or has duplicates"
    for code in codes:
        assert re.fullmatch(r"[A-Z]{2}", code), code
        assert code in ISO_3166_1_ALPHA_2, f"{group}: {code} is not an ISO 3166-1 alpha-2 code"


def test_china_and_russia_are_arms_embargoed_destinations() -> None:
    assert {"CN", "RU", "BY", "IR", "KP", "VE"} <= set(_groups()["D:5"])


def test_cambodia_is_no_longer_in_d5_but_remains_in_d1() -> None:
    assert "KH" not in _groups()["D:5"]
    assert "KH" in _groups()["D:1"]


def test_iran_north_korea_syria_and_cuba_are_in_the_embargoed_groups() -> None:
    embargoed = set(_groups()["E:1"]) | set(_groups()["E:2"])
    assert {"IR", "KP", "SY", "CU"} <= embargoed
    assert set(_groups()["E:1"]) == {"IR", "KP", "SY"}
    assert _groups()["E:2"] == ["CU"]


def test_macau_is_its_own_group() -> None:
    assert _groups()["Macau"] == ["MO"]


def test_close_allies_are_in_no_restricted_group() -> None:
    restricted = set().union(*(_groups()[g] for g in ("D:1", "D:4", "D:5", "E:1", "E:2")))
    for ally in ("US", "GB", "JP", "DE", "FR", "CA", "AU", "KR", "NL"):
        assert ally not in restricted, ally


def test_rules_reference_only_defined_groups_and_valid_actions() -> None:
    for rule in _rules():
        assert set(rule) <= {"groups", "jurisdictions", "action"}
        assert rule["action"] in {"Allow", "RequireLicense", "Prohibit"}
        assert set(rule.get("groups", [])) <= set(_groups()), rule
        for code in rule.get("jurisdictions", []):
            assert code in ISO_3166_1_ALPHA_2


def _first_action(country: str) -> str:
    for rule in _rules():
        members = set(rule.get("jurisdictions", []))
        for group in rule.get("groups", []):
            members |= set(_groups()[group])
        if country in members:
            return str(rule["action"])
    return "Allow"


@pytest.mark.parametrize(
    ("country", "action"),
    [
        ("IR", "Prohibit"),
        ("KP", "Prohibit"),
        ("SY", "Prohibit"),
        ("CU", "Prohibit"),
        ("CN", "RequireLicense"),
        ("RU", "RequireLicense"),
        ("MO", "RequireLicense"),
        ("HK", "RequireLicense"),
        ("VN", "RequireLicense"),
        ("KH", "RequireLicense"),
        ("SA", "RequireLicense"),
        ("AE", "RequireLicense"),
        ("IL", "Allow"),
        ("US", "Allow"),
        ("DE", "Allow"),
        ("IN", "Allow"),
        ("BR", "Allow"),
    ],
)
def test_the_default_rules_give_each_destination_the_3a090_treatment(country: str, action: str) -> None:
    assert _first_action(country) == action


def test_embargoed_countries_are_prohibited_before_any_license_rule_matches() -> None:
    actions = [rule["action"] for rule in _rules()]
    assert actions[0] == "Prohibit"
    assert set(_rules()[0]["groups"]) == {"E:1", "E:2"}


def test_the_a5_a6_exclusion_never_releases_a_d5_country_or_macau() -> None:
    for country in set(_groups()["D:5"]) | {"MO"}:
        assert _first_action(country) in {"RequireLicense", "Prohibit"}, country
