"""bench/scale.py: the generated directory of all Sweden is one Ankomst accepts, and the load
it replays is the one its docstring describes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pycountry
import pytest

from bench import scale
from bot.domain.directory import Directory, Organisation
from bot.runtime.directory_file import check_directory, load_directory


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[scale.Generated, Path]:
    path = tmp_path_factory.mktemp("scale") / "directory.toml"
    return scale.write_directory(path), path


@pytest.fixture(scope="module")
def directory(written: tuple[scale.Generated, Path]) -> Directory:
    return load_directory(written[1])


def test_the_file_passes_the_directory_check(written: tuple[scale.Generated, Path]) -> None:
    assert check_directory(written[1]) == []


def test_the_21_regions_are_swedens_counties_and_hold_290_municipalities() -> None:
    # pycountry names them "Stockholms län [SE-01]": the name, then the county number.
    counties = {
        s.code.removeprefix("SE-"): s.name.split(" [")[0]
        for s in pycountry.subdivisions.get(country_code="SE")
    }
    assert {r.iso: r.county for r in scale.REGIONS} == counties
    assert sum(r.municipalities for r in scale.REGIONS) == 290


def test_every_municipality_has_its_defaults_and_a_channel_for_each(
    directory: Directory,
) -> None:
    assert len(directory.municipalities) == 290
    # Grouped once: Directory.default_for scans every organisation, 290 × 16 scans of ~5,800.
    defaults: dict[str, list[Organisation]] = {m: [] for m in directory.municipalities}
    for org in directory.organisations.values():
        if org.default:
            defaults[org.municipality].append(org)
        if org.kind != "management":
            assert org.supervisor is not None
            assert directory.organisations[org.supervisor].kind == "management"
    for mid, orgs in defaults.items():
        kinds = Counter(o.kind for o in orgs)
        for kind in ("reception_unit", "health_centre", "preschool", "social_services"):
            assert kinds[kind] == 1, (mid, kind)
        for age in range(6, 18):
            schools = [o for o in orgs if o.kind == "school" and o.serves_age(age)]
            assert len(schools) == 1, (mid, age)
        for org in orgs:
            assert org.email or org.telegram_chats, org.id
            if org.kind == "reception_unit":
                assert org.email is not None


def test_health_centres_answer_to_their_regions_primary_care(directory: Directory) -> None:
    for org in directory.organisations.values():
        if org.kind == "health_centre":
            region = org.municipality.split("-")[0]
            assert org.supervisor == f"region-{region}-primarvard"


def test_channels_are_mostly_email_some_telegram(written: tuple[scale.Generated, Path]) -> None:
    generated, _ = written
    total = sum(generated.organisations.values())
    assert generated.with_email / total > 0.9
    assert 0.1 < generated.with_telegram / total < 0.3


def test_weights_follow_population(written: tuple[scale.Generated, Path]) -> None:
    weights = written[0].weights
    assert sum(weights.values()) == pytest.approx(1.0)
    stockholm = sum(w for m, w in weights.items() if m.startswith("ab-"))
    jamtland = sum(w for m, w in weights.items() if m.startswith("z-"))
    assert stockholm == pytest.approx(2232 / 9852, rel=1e-6)
    assert jamtland == pytest.approx(127 / 9852, rel=1e-6)
    assert weights["ab-01"] > weights["ab-02"] > weights["ab-26"]


def test_the_generator_is_deterministic() -> None:
    assert scale.generate_directory().toml == scale.generate_directory().toml
    assert scale.generate_directory(1).toml != scale.generate_directory(2).toml


def test_the_peak_rate_is_the_documented_one() -> None:
    # 1,300 unaccompanied + 2,600 family arrivals a week, 40 office hours, busiest hour 2×.
    assert scale.arrivals_per_week() == 3900
    assert scale.peak_rate() * 3600 == pytest.approx(195)
    rng = random.Random(7)
    offsets = scale.poisson_offsets(scale.peak_rate() * scale.SPEED, 3600, rng)
    assert len(offsets) == pytest.approx(1950, rel=0.1)
    assert offsets == sorted(offsets)
    assert offsets[0] > 0
    assert offsets[-1] < 3600


def test_arrivals_are_a_third_unaccompanied_and_routable(
    written: tuple[scale.Generated, Path], directory: Directory
) -> None:
    bodies = scale.arrival_bodies(3000, written[0].weights, random.Random(3), "2026-12-10", "t")
    alone = [b for b in bodies if b["unaccompanied"]]
    assert len(alone) / len(bodies) == pytest.approx(1 / 3, abs=0.04)
    assert all(len(b["children"]) == 1 and b["children"][0]["age"] >= 12 for b in alone)
    assert len({b["external_ref"] for b in bodies}) == len(bodies)
    where = Counter(b["municipality"] for b in bodies)
    assert where["ab-01"] > where["z-08"]
    for b in bodies[:200]:
        ages = [c["age"] for c in b["children"]]
        told = directory.route(b["municipality"], ages, b["unaccompanied"])
        kinds = {o.kind for o in told}
        assert "health_centre" in kinds
        assert ("social_services" in kinds) == b["unaccompanied"]


def test_routing_on_a_municipalitys_slice_is_routing_on_the_whole(
    written: tuple[scale.Generated, Path], directory: Directory
) -> None:
    parts = scale.slices(directory)
    bodies = scale.arrival_bodies(60, written[0].weights, random.Random(5), "2026-12-10", "s")
    for b in bodies:
        m, ages, alone = b["municipality"], [c["age"] for c in b["children"]], b["unaccompanied"]
        assert parts[m].route(m, ages, alone) == directory.route(m, ages, alone)
        assert parts[m].reception_unit(m) == directory.reception_unit(m)
