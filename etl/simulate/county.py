"""The simulated county held in memory: base state ("day 0") and each day's activity.

:class:`County` is a pure function of (contracts, seed, scale): ``base()`` builds people,
households, entities and chemical sites; ``step(day)`` applies one day's activity, drawn from an
RNG seeded by (seed, day, stream), and returns what the departments' systems record that day
(SQL upserts and deletes, export files, API rows) with an exact record of the dirt injected.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from etl.contracts import CountyProfile, DatasetContract, SystemContract
from etl.simulate import codes, vocab
from etl.simulate.dirt import Plan, duplicate

DAY = np.timedelta64(86400, "s")


@dataclass
class Delta:
    upsert: pd.DataFrame | None = None  # rows in contract column names
    delete: list | None = None  # primary-key values of deleted rows


@dataclass
class DayOut:
    day: int
    sql: dict[tuple[str, str], Delta] = field(default_factory=dict)
    files: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    api: dict[tuple[str, str], Delta] = field(default_factory=dict)
    dirt: list[dict] = field(default_factory=list)
    in_table: list[dict] = field(default_factory=list)


# Dirt plans: (kind, column, rate). Rates sum to about 1-2 % per dataset.
PLANS: dict[tuple[str, str], list[tuple[str, str, float]]] = {
    ("public_security", "resident"): [
        ("bad_id_check", "id_number", 0.004),
        ("bad_birth_date", "id_number", 0.002),
        ("lowercase_x", "id_number", 0.03),
        ("blank_padded", "name", 0.003),
        ("unknown_village", "village_code", 0.003),
        ("null_required", "name", 0.001),
    ],
    ("public_security", "household"): [
        ("blank_padded", "head_id_number", 0.005),
        ("unknown_village", "village_code", 0.005),
        ("null_required", "household_type", 0.003),
    ],
    ("market_regulation", "entity"): [
        ("bad_credit_check", "credit_code", 0.006),
        ("unknown_village", "village_code", 0.004),
        ("bad_id_check", "legal_rep_id_number", 0.003),
        ("null_required", "entity_type", 0.002),
    ],
    ("health", "consultation"): [
        ("bad_id_check", "patient_id_number", 0.008),
        ("unknown_village", "village_code", 0.004),
        ("null_required", "consulting_org", 0.003),
    ],
    ("health", "referral"): [
        ("bad_id_check", "patient_id_number", 0.008),
        ("null_required", "direction", 0.004),
    ],
    ("emergency", "chemical_site"): [
        ("unknown_village", "village_code", 0.02),
        ("null_required", "site_name", 0.01),
        ("wrong_town", "town_code", 0.02),
    ],
    ("emergency", "sensor_alarm"): [("null_required", "alarm_type", 0.005)],
    ("hrss", "insured_person"): [
        ("bad_id_check", "id_number", 0.004),
        ("bad_birth_date", "id_number", 0.002),
        ("lowercase_x", "id_number", 0.03),
        ("legacy_15", "id_number", 0.004),
        ("blank_padded", "id_number", 0.003),
        ("null_required", "insurance_type", 0.002),
        ("bad_credit_check", "employer_credit_code", 0.003),
    ],
    ("civil_affairs", "assistance"): [
        ("bad_id_check", "id_number", 0.01),
        ("blank_padded", "id_number", 0.005),
        ("unknown_village", "village_code", 0.005),
        ("null_required", "status", 0.005),
    ],
    ("housing_fund", "deposit"): [
        ("bad_id_check", "id_number", 0.005),
        ("lowercase_x", "id_number", 0.03),
        ("blank_padded", "name", 0.004),
        ("bad_credit_check", "employer_credit_code", 0.003),
        ("null_required", "amount", 0.002),
    ],
    ("hotline", "ticket"): [
        ("blank_padded", "caller_name", 0.004),
        ("unknown_village", "village_code", 0.005),
        ("null_required", "category", 0.003),
    ],
    ("traffic_police", "violation"): [
        ("bad_id_check", "driver_id_number", 0.005),
        ("unknown_village", "village_code", 0.005),
        ("null_required", "plate_no", 0.002),
    ],
}
DUPLICATE_RATE = 0.005
LATE_RATE = {("hotline", "ticket"): 0.03, ("traffic_police", "violation"): 0.05}


def table(data: dict, index=None) -> pd.DataFrame:
    """A DataFrame whose text columns are plain object columns (not pandas' Arrow-backed
    strings, which are slow to convert row by row for the database drivers)."""
    n = next((len(v) for v in data.values() if v is not None and not np.isscalar(v)), 0)
    cols = {}
    for key, value in data.items():
        if value is None or isinstance(value, str):
            arr = np.full(n, value, dtype=object)
        elif np.isscalar(value):
            arr = np.full(n, value)
        else:
            arr = value.to_numpy() if isinstance(value, pd.Series) else np.asarray(value)
        if arr.dtype.kind in "USO":
            cols[key] = pd.Series(arr.astype(object), dtype=object, index=index)
        else:
            cols[key] = pd.Series(arr, index=index)
    return pd.DataFrame(cols, index=index)


def stream_id(name: str) -> int:
    return zlib.crc32(name.encode())


def _place(village_name: str) -> str:
    """Place name of a village committee: 尹马乔村村民委员会 -> 尹马乔村,
    和平街居委会 -> 和平街社区."""
    for suffix, repl in (
        ("村民委员会", ""),
        ("居民委员会", "社区"),
        ("村委会", "村"),
        ("社区居委会", "社区"),
        ("居委会", "社区"),
    ):
        if village_name.endswith(suffix):
            return village_name[: -len(suffix)] + repl
    return village_name


class County:
    def __init__(
        self, profile: CountyProfile, systems: list[SystemContract], seed: int, scale: float
    ):
        self.profile, self.seed, self.scale = profile, seed, scale
        self.systems = {s.system: s for s in systems}
        self.start = date.fromisoformat(profile.simulation.start_date)
        vs = profile.villages
        self.v_code = np.array([v.code for v in vs], dtype="<U12")
        self.v_place = np.array([_place(v.name) for v in vs])
        self.v_town = np.array([v.town_name for v in vs])
        self.v_town_code = np.array([v.town_code for v in vs])
        self.plans = {k: Plan(v) for k, v in PLANS.items()}
        prov = vocab.PROVINCES.get(profile.province.code[:2], ("", 110.0, 35.0))
        self.prov_abbr, self.lon0, self.lat0 = prov
        self.addr_prefix = f"{profile.province.name}{profile.city.name}{profile.name}"
        # plates of a prefecture: province abbreviation + a letter; A is the capital and letters
        # mostly follow the division codes (a heuristic: the profile does not say)
        self.plate_letter = vocab.PLATE_LETTERS[(int(profile.city.code[2:4]) - 1) % 24]

    # ------------------------------------------------------------------ helpers

    def rng(self, day: int, stream: str) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, day, stream_id(stream)]))

    def n(self, rng: np.random.Generator, per_day: float) -> int:
        return int(rng.poisson(per_day * self.scale))

    def contract(self, system: str, dataset: str) -> DatasetContract:
        return self.systems[system].dataset(dataset)

    def day_date(self, day: int) -> date:
        return self.start + timedelta(days=day - 1)

    def frame(self, system: str, dataset: str, data: dict) -> pd.DataFrame:
        cols = self.contract(system, dataset).column_names
        return table({c: data[c] for c in cols})

    def _record(self, out: DayOut, system: str, dataset: str, counts, scope: str = "written"):
        """Add dirt counts to the day's record (one entry per dataset, kind and column)."""
        target = out.dirt if scope == "written" else out.in_table
        for kind, column, count in counts:
            for entry in target:
                if (entry["system"], entry["dataset"], entry["kind"], entry["column"]) == (
                    system,
                    dataset,
                    kind,
                    column,
                ):
                    entry["count"] += int(count)
                    break
            else:
                target.append(
                    {
                        "system": system,
                        "dataset": dataset,
                        "day": out.day,
                        "kind": kind,
                        "column": column,
                        "count": int(count),
                    }
                )

    def _emit(
        self,
        out: DayOut,
        system: str,
        dataset: str,
        df: pd.DataFrame,
        kinds: np.ndarray,
        rng: np.random.Generator | None = None,
        dup: bool = False,
    ) -> pd.DataFrame:
        plan = self.plans[(system, dataset)]
        dirty = plan.apply(df, kinds)
        self._record(out, system, dataset, plan.counts(kinds))
        if dup and rng is not None:
            dirty, ndup = duplicate(rng, dirty, kinds, DUPLICATE_RATE)
            self._record(out, system, dataset, [("duplicate_row", "*", ndup)])
        return dirty

    def names(self, rng: np.random.Generator, sex: np.ndarray, surnames=None) -> np.ndarray:
        n = len(sex)
        if surnames is None:
            w = np.array(vocab.SURNAME_WEIGHTS, dtype=float)
            surnames = np.array(list(vocab.SURNAMES))[rng.choice(len(w), size=n, p=w / w.sum())]
        male, female = np.array(list(vocab.MALE_CHARS)), np.array(list(vocab.FEMALE_CHARS))
        g1 = np.where(
            sex == "1", male[rng.integers(0, len(male), n)], female[rng.integers(0, len(female), n)]
        )
        g2 = np.where(
            sex == "1", male[rng.integers(0, len(male), n)], female[rng.integers(0, len(female), n)]
        )
        two = rng.random(n) < 0.7
        return np.char.add(np.char.add(surnames.astype(str), g1), np.where(two, g2, ""))

    def phones(self, rng: np.random.Generator, n: int) -> np.ndarray:
        prefixes = np.array(vocab.MOBILE_PREFIXES)[rng.integers(0, len(vocab.MOBILE_PREFIXES), n)]
        return np.char.add(prefixes, codes.random_digits(rng, n, 8))

    def new_ids(
        self, rng, addr: np.ndarray, birth: np.ndarray, sex: np.ndarray, taken: set[str]
    ) -> np.ndarray:
        """Unique valid ID numbers (sequence odd for men), avoiding bodies already taken."""
        n = len(addr)
        seq = rng.integers(0, 500, n) * 2 + (sex == "1")
        bodies = codes.id_bodies(addr, birth, seq)
        for _ in range(50):
            clash = np.ones(n, dtype=bool)
            clash[np.unique(bodies, return_index=True)[1]] = False
            clash |= np.fromiter((b in taken for b in bodies.tolist()), bool, n)
            if not clash.any():
                break
            k = int(clash.sum())
            seq[clash] = rng.integers(0, 500, k) * 2 + (sex[clash] == "1")
            bodies[clash] = codes.id_bodies(addr[clash], birth[clash], seq[clash])
        taken.update(bodies.tolist())
        return codes.id_numbers(bodies)

    def addresses(self, rng, vil: np.ndarray) -> np.ndarray:
        num = rng.integers(1, 300, len(vil)).astype(str)
        town_place = np.char.add(self.v_town[vil], self.v_place[vil])
        return np.char.add(np.char.add(np.char.add(self.addr_prefix, town_place), num), "号")

    # ------------------------------------------------------------------ base state

    def base(self) -> DayOut:
        out = DayOut(day=0)
        self._base_people()
        self._base_entities()
        self._base_sites()
        self.consultation_next, self.alarm_next = 1, 1
        self.referrals = table(
            {c: [] for c in [*self.contract("health", "referral").column_names, "dirt"]}
        )
        self.violations = None
        self.violation_serial = 0
        out.sql[("public_security", "resident")] = Delta(self._resident_rows(out, None))
        out.sql[("public_security", "household")] = Delta(self._household_rows(out, None))
        out.sql[("market_regulation", "entity")] = Delta(self._entity_rows(out, None))
        out.sql[("market_regulation", "entity_change")] = Delta(self._base_changes(out))
        out.sql[("emergency", "chemical_site")] = Delta(self._site_rows(out, None))
        for ds in ("consultation", "referral"):
            out.sql[("health", ds)] = Delta(
                self.frame("health", ds, {c: [] for c in self.contract("health", ds).column_names})
            )
        out.sql[("emergency", "sensor_alarm")] = Delta(
            self.frame(
                "emergency",
                "sensor_alarm",
                {c: [] for c in self.contract("emergency", "sensor_alarm").column_names},
            )
        )
        self._in_table(out)
        return out

    def _base_people(self) -> None:
        rng = self.rng(0, "people")
        n = max(1, round(self.profile.simulation.residents * self.scale))
        weights = rng.lognormal(0, 0.6, len(self.v_code))
        weights *= np.where(np.array([int(c[9:]) < 200 for c in self.v_code]), 1.5, 1.0)
        vil = rng.choice(len(self.v_code), size=n, p=weights / weights.sum())
        groups = np.array(vocab.AGE_GROUP_WEIGHTS)
        group = rng.choice(len(groups), size=n, p=groups / groups.sum())
        age_days = ((group * 5 + rng.random(n) * 5) * 365.25).astype(np.int64)
        ref = np.datetime64(self.start, "D") - np.timedelta64(1, "D")
        birth = ref - age_days.astype("timedelta64[D]")
        sex = np.where(rng.random(n) < 0.505, "1", "2")
        year = birth.astype("datetime64[Y]").astype(int) + 1970
        addr = np.full(n, self.profile.code, dtype="<U6")
        u = rng.random(n)
        for hc in self.profile.historical_codes:
            eligible = year < min(hc.until_year, vocab.ID_CARDS_INTRODUCED)
            addr[eligible & (u < 0.3)] = hc.code
        city4 = self.profile.city.code[:4]
        others = [f"{city4}{k}" for k in ("02", "03", "21") if f"{city4}{k}" != self.profile.code]
        moved_in = rng.random(n) < 0.01
        addr[moved_in] = np.array(others)[rng.integers(0, len(others), int(moved_in.sum()))]
        self.taken: set[str] = set()
        ids = self.new_ids(rng, addr, birth, sex, self.taken)
        eth_w = np.array(vocab.ETHNICITY_WEIGHTS)
        eth = np.array(vocab.ETHNICITIES)[rng.choice(len(eth_w), size=n, p=eth_w / eth_w.sum())]
        phone = self.phones(rng, n).astype(object)
        phone[(age_days < 12 * 365) | (rng.random(n) < 0.1)] = None
        lo = np.datetime64(self.start, "s") - np.timedelta64(8 * 365 * 86400, "s")
        born = birth.astype("datetime64[s]")
        since = np.maximum(born, lo)
        span = (np.datetime64(self.start, "s") - since).astype(np.int64)
        upd = since + (rng.random(n) * (span - 1)).astype(np.int64).astype("timedelta64[s]")
        people = table(
            {
                "id": ids,
                "birth": birth,
                "sex": sex,
                "name": self.names(rng, sex),
                "eth": eth,
                "vil": vil,
                "phone": phone,
                "status": "正常",
                "upd": codes.fmt_ts(upd),
            }
        )
        # households: people of a village cut into runs of 1-6
        order = np.lexsort((rng.random(n), vil))
        sizes = rng.choice([1, 2, 3, 4, 5, 6], size=n, p=[0.15, 0.3, 0.25, 0.17, 0.08, 0.05])
        run = np.searchsorted(np.cumsum(sizes), np.arange(n), side="right")
        key = vil[order].astype(np.int64) * (n + 1) + run
        hh_sorted = pd.factorize(key)[0]
        hh = np.empty(n, dtype=np.int64)
        hh[order] = hh_sorted
        people["hh"] = hh
        people["dirt"] = self.plans[("public_security", "resident")].assign(
            rng, table({"id_number": ids, "name": people["name"], "village_code": self.v_code[vil]})
        )
        self.people = people
        nh = int(hh.max()) + 1
        h_vil = np.zeros(nh, dtype=np.int64)
        h_vil[hh] = vil
        serial = pd.Series(h_vil).groupby(h_vil).cumcount().to_numpy() + 1
        self.hh_counter = np.bincount(h_vil, minlength=len(self.v_code)).astype(np.int64)
        households = table(
            {
                "household_id": np.char.add(self.v_code[h_vil], codes.zfill(serial, 4)),
                "vil": h_vil,
                "htype": np.where(rng.random(nh) < 0.02, "集体户", "家庭户"),
                "address": self.addresses(rng, h_vil),
                "live": True,
            }
        )
        self.households = households
        self._refresh_households(np.arange(nh))
        households = self.households
        people["address"] = households["address"].to_numpy()[hh]
        self.households["dirt"] = self.plans[("public_security", "household")].assign(
            rng,
            table(
                {
                    "head_id_number": self.people["id"].to_numpy()[
                        self.households["head"].to_numpy()
                    ],
                    "village_code": self.v_code[h_vil],
                    "household_type": households["htype"],
                }
            ),
        )

    def _refresh_households(self, hids: np.ndarray) -> np.ndarray:
        """Recompute member count and head (oldest member) of households; returns the ids of
        households left with nobody (to delete)."""
        p = self.people
        members = p[(p["status"] == "正常") & p["hh"].isin(hids)]
        count = members.groupby("hh").size()
        head = members.sort_values(["birth", "id"]).groupby("hh")["id"].head(1)
        head_pid = pd.Series(head.index.to_numpy(), index=members.loc[head.index, "hh"].to_numpy())
        h = self.households
        if "members" not in h:
            h["members"] = 0
            h["head"] = 0
        h.loc[hids, "members"] = count.reindex(hids, fill_value=0).to_numpy()
        has = head_pid.index.to_numpy()
        h.loc[has, "head"] = head_pid.to_numpy()
        empty = hids[h.loc[hids, "members"].to_numpy() == 0]
        return empty

    def _resident_rows(self, out: DayOut, pids: np.ndarray | None) -> pd.DataFrame:
        p = self.people if pids is None else self.people.loc[pids]
        df = self.frame(
            "public_security",
            "resident",
            {
                "id_number": p["id"].to_numpy(),
                "name": p["name"].to_numpy(),
                "sex": p["sex"].to_numpy(),
                "ethnicity": p["eth"].to_numpy(),
                "birth_date": codes.fmt_date(p["birth"].to_numpy()),
                "village_code": self.v_code[p["vil"].to_numpy()],
                "address": p["address"].to_numpy(),
                "phone": p["phone"].to_numpy(),
                "status": p["status"].to_numpy(),
                "updated_at": p["upd"].to_numpy(),
            },
        )
        return self._emit(out, "public_security", "resident", df, p["dirt"].to_numpy())

    def _household_rows(self, out: DayOut, hids: np.ndarray | None) -> pd.DataFrame:
        h = self.households[self.households["live"]] if hids is None else self.households.loc[hids]
        df = self.frame(
            "public_security",
            "household",
            {
                "household_id": h["household_id"].to_numpy(),
                "head_id_number": self.people["id"].to_numpy()[h["head"].to_numpy()],
                "household_type": h["htype"].to_numpy(),
                "member_count": h["members"].to_numpy(),
                "village_code": self.v_code[h["vil"].to_numpy()],
                "address": h["address"].to_numpy(),
            },
        )
        return self._emit(out, "public_security", "household", df, h["dirt"].to_numpy())

    # ------------------------------------------------------------------ entities

    def _unique_credit_codes(
        self, kinds: np.ndarray, division: np.ndarray, bodies: np.ndarray, day: int
    ) -> np.ndarray:
        """Credit codes, new bodies drawn for any that repeat one issued before or in the
        batch (random 8-character bodies collide a few dozen times among 150,000 entities).
        The redraws come from a generator of their own, so a county without collisions
        simulates exactly as before."""
        known = getattr(self, "entities", None)  # None while the base county is drawn
        issued = set() if known is None else set(known["credit_code"])
        credit = codes.credit_codes(kinds, division, bodies)
        redraw = np.random.default_rng([day, len(bodies)])
        while True:
            seen = pd.Series(credit).duplicated().to_numpy() | np.isin(credit, list(issued))
            if not seen.any():
                return credit
            bodies = bodies.copy()
            bodies[seen] = codes.random_org_bodies(redraw, int(seen.sum()))
            credit = codes.credit_codes(kinds, division, bodies)

    def _new_entities(self, rng, kinds: np.ndarray, day: int) -> pd.DataFrame:
        n = len(kinds)
        code, city = self.profile.code, self.profile.city.code
        division = np.where((kinds == "91") & (rng.random(n) < 0.15), city, code)
        credit = self._unique_credit_codes(kinds, division, codes.random_org_bodies(rng, n), day)
        vil = rng.integers(0, len(self.v_code), n)
        alive = self.people[
            (self.people["status"] == "正常")
            & (
                self.people["birth"]
                < np.datetime64(self.start, "D") - np.timedelta64(20 * 365, "D")
            )
        ].index
        rep = alive.to_numpy()[rng.integers(0, len(alive), n)]
        rep_name = self.people["name"].to_numpy()[rep]
        rep_id = self.people["id"].to_numpy()[rep].astype(object)
        word = np.array(vocab.ENTERPRISE_WORDS)[rng.integers(0, len(vocab.ENTERPRISE_WORDS), n)]
        ent = vocab.ENTERPRISE_KINDS[:]
        shop, coop = vocab.SHOP_KINDS, vocab.COOP_KINDS
        pick_e = rng.integers(0, len(ent), n)
        pick_s = rng.integers(0, len(shop), n)
        pick_c = rng.integers(0, len(coop), n)
        names, industry, capital = [], [], []
        county = self.profile.name
        city_short = self.profile.city.name.removesuffix("市")
        for i in range(n):  # n is small per day; at base ~30k cheap string formatting
            k, place, town = kinds[i], self.v_place[vil[i]], self.v_town[vil[i]]
            if k == "91":
                cls, part = ent[pick_e[i]]
                prefix = city_short if division[i] == city else county
                names.append(f"{prefix}{word[i]}{part}有限公司")
                capital.append(round(float(rng.lognormal(5.5, 1.2)), 2))
            elif k == "92":
                cls, part = shop[pick_s[i]]
                names.append(f"{county}{town}{rep_name[i]}{part}")
                capital.append(None)
            elif k == "93":
                cls, part = coop[pick_c[i]]
                names.append(f"{county}{place}{part}专业合作社")
                capital.append(round(float(rng.lognormal(3.5, 0.8)), 2))
            elif k == "N2":
                cls = vocab.COLLECTIVE_CLASS
                names.append(f"{county}{town}{place}股份经济合作社")
                capital.append(round(float(rng.lognormal(4.5, 0.8)), 2))
            else:
                cls = vocab.COLLECTIVE_CLASS
                names.append(f"{county}{town}经济联合总社")
                capital.append(round(float(rng.lognormal(6.5, 0.6)), 2))
            industry.append(cls)
        rep_id[np.isin(kinds, ["N2", "N3"])] = None
        phone = self.phones(rng, n).astype(object)
        phone[rng.random(n) < 0.15] = None
        return table(
            {
                "credit_code": credit,
                "name": names,
                "entity_type": [vocab.ENTITY_TYPES[k] for k in kinds],
                "legal_rep_name": rep_name,
                "legal_rep_id_number": rep_id,
                "industry_code": industry,
                "registered_capital": capital,
                "vil": vil,
                "address": self.addresses(rng, vil),
                "phone": phone,
                "status": "存续",
                "dept": kinds,
                "live": True,
            }
        )

    def _base_entities(self) -> None:
        rng = self.rng(0, "entities")
        n = max(10, round(self.profile.simulation.entities * self.scale))
        n_n3 = max(
            1, min(len(self.profile.towns), round(len(self.profile.towns) * self.scale * 10))
        )
        n_n2 = max(3, round(len(self.v_code) * 0.15 * min(1.0, self.scale * 10)))
        rest = n - n_n2 - n_n3
        kinds = np.concatenate(
            [
                rng.choice(["91", "92", "93"], size=rest, p=[0.25, 0.71, 0.04]),
                np.full(n_n2, "N2"),
                np.full(n_n3, "N3"),
            ]
        ).astype("<U2")
        kinds = kinds[rng.permutation(n)]
        e = self._new_entities(rng, kinds, 0)
        years = np.where(
            np.isin(kinds, ["N2", "N3"]), rng.uniform(4, 8, n), rng.exponential(6, n) + 0.05
        )
        est = np.datetime64(self.start, "D") - (years * 365.25).astype(np.int64).astype(
            "timedelta64[D]"
        )
        e["established"] = est
        u = rng.random(n)
        e["status"] = np.where(u < 0.10, "注销", np.where(u < 0.12, "吊销", "存续"))
        e.loc[np.isin(kinds, ["N2", "N3"]), "status"] = "存续"
        e["dirt"] = self.plans[("market_regulation", "entity")].assign(
            rng, e.assign(village_code=self.v_code[e["vil"].to_numpy()])
        )
        # chemical producers: some enterprises turned into chemical plants
        ent = np.flatnonzero(
            (kinds == "91") & (e["dirt"].to_numpy() == 0) & (e["status"].to_numpy() == "存续")
        )
        n_sites = max(1, round(n / 300))
        chem = rng.choice(ent, size=min(len(ent), n_sites), replace=False) if len(ent) else ent
        cls = np.array(vocab.CHEMICAL_CLASSES)[
            rng.integers(0, len(vocab.CHEMICAL_CLASSES), len(chem))
        ]
        e.loc[chem, "industry_code"] = cls
        e.loc[chem, "name"] = [
            f"{self.profile.name}{w}化工有限公司"
            for w in np.array(vocab.ENTERPRISE_WORDS)[
                rng.integers(0, len(vocab.ENTERPRISE_WORDS), len(chem))
            ]
        ]
        self.chem_entities = np.sort(chem)
        self.entities = e

    def _entity_rows(self, out: DayOut, eids: np.ndarray | None) -> pd.DataFrame:
        e = self.entities[self.entities["live"]] if eids is None else self.entities.loc[eids]
        df = self.frame(
            "market_regulation",
            "entity",
            {
                **{
                    c: e[c].to_numpy()
                    for c in (
                        "credit_code",
                        "name",
                        "entity_type",
                        "legal_rep_name",
                        "legal_rep_id_number",
                        "industry_code",
                        "registered_capital",
                        "address",
                        "phone",
                        "status",
                    )
                },
                "established_date": codes.fmt_date(e["established"].to_numpy()),
                "village_code": self.v_code[e["vil"].to_numpy()],
            },
        )
        return self._emit(out, "market_regulation", "entity", df, e["dirt"].to_numpy())

    def _stored_credit(self, eids: np.ndarray) -> np.ndarray:
        """Credit codes as the register stores them (with the entity's injected dirt)."""
        e = self.entities.loc[eids]
        codes_ = e["credit_code"].to_numpy().astype("<U18")
        bad = e["dirt"].to_numpy() == self._entity_bad_credit_kind()
        codes_[bad] = codes.bad_credit_check(codes_[bad])
        return codes_

    def _entity_bad_credit_kind(self) -> int:
        entries = self.plans[("market_regulation", "entity")].entries
        return 1 + [k for k, _, _ in entries].index("bad_credit_check")

    def _changes(self, out: DayOut, eids, types, items, at) -> pd.DataFrame:
        n = len(eids)
        ids = np.arange(self.change_next, self.change_next + n)
        self.change_next += n
        bad = self.entities.loc[eids, "dirt"].to_numpy() == self._entity_bad_credit_kind()
        self._record(
            out,
            "market_regulation",
            "entity_change",
            [("bad_credit_check", "credit_code", int(bad.sum()))],
        )
        return self.frame(
            "market_regulation",
            "entity_change",
            {
                "change_id": ids,
                "credit_code": self._stored_credit(eids),
                "change_type": types,
                "change_item": items,
                "changed_at": at,
            },
        )

    def _base_changes(self, out: DayOut) -> pd.DataFrame:
        rng = self.rng(0, "entity_change")
        e = self.entities
        n = len(e)
        est = e["established"].to_numpy().astype("datetime64[s]")
        at = est + codes.seconds_in_day(rng, n).astype("timedelta64[s]")
        closed = np.flatnonzero(e["status"].to_numpy() != "存续")
        end = np.datetime64(self.start, "s")
        span = (end - at[closed]).astype(np.int64)
        closed_at = at[closed] + (rng.random(len(closed)) * span).astype(np.int64).astype(
            "timedelta64[s]"
        )
        eids = np.concatenate([np.arange(n), closed])
        when = np.concatenate([at, closed_at])
        types = np.concatenate([np.full(n, "设立"), np.full(len(closed), "注销")])
        items = np.concatenate(
            [np.full(n, None, dtype=object), e["status"].to_numpy()[closed].astype(object)]
        )
        order = np.lexsort((eids, when))
        self.change_next = 1
        return self._changes(
            out, eids[order], types[order], items[order], codes.fmt_ts(when[order])
        )

    # ------------------------------------------------------------------ chemical sites

    def _base_sites(self) -> None:
        rng = self.rng(0, "sites")
        chem = self.chem_entities
        n = len(chem)
        e = self.entities.loc[chem]
        chems = np.array(vocab.CHEMICALS)
        picks = [",".join(sorted(set(chems[rng.integers(0, len(chems), 3)]))) for _ in range(n)]
        vil = e["vil"].to_numpy()
        site = table(
            {
                "site_id": [f"WHP{self.profile.code}{i + 1:04d}" for i in range(n)],
                "eid": chem,
                "site_name": [f"{nm}生产厂区" for nm in e["name"]],
                "hazard_class": np.array(vocab.HAZARD_CLASSES)[
                    rng.choice(4, n, p=[0.1, 0.2, 0.3, 0.4])
                ],
                "chemicals": picks,
                "vil": vil,
                "longitude": np.round(self.lon0 + rng.normal(0, 0.15, n), 6),
                "latitude": np.round(self.lat0 + rng.normal(0, 0.12, n), 6),
                "sensor_count": rng.integers(4, 40, n),
                "status": np.where(rng.random(n) < 0.9, "在产", "停产"),
            }
        )
        site["dirt"] = self.plans[("emergency", "chemical_site")].assign(
            rng,
            site.assign(village_code=self.v_code[vil], town_code=self.v_code[vil].astype("<U9")),
        )
        self.sites = site

    def _site_rows(self, out: DayOut, sids: np.ndarray | None) -> pd.DataFrame:
        s = self.sites if sids is None else self.sites.loc[sids]
        df = self.frame(
            "emergency",
            "chemical_site",
            {
                **{
                    c: s[c].to_numpy()
                    for c in (
                        "site_id",
                        "site_name",
                        "hazard_class",
                        "chemicals",
                        "longitude",
                        "latitude",
                        "sensor_count",
                        "status",
                    )
                },
                "credit_code": self._stored_credit(s["eid"].to_numpy()),
                "village_code": self.v_code[s["vil"].to_numpy()],
                "town_code": self.v_code[s["vil"].to_numpy()].astype("<U9"),
            },
        )
        return self._emit(out, "emergency", "chemical_site", df, s["dirt"].to_numpy())

    # ------------------------------------------------------------------ in-table dirt

    def _in_table(self, out: DayOut) -> None:
        live_h = self.households["live"].to_numpy()
        live_e = self.entities["live"].to_numpy()
        for (system, dataset), kinds in (
            (("public_security", "resident"), self.people["dirt"].to_numpy()),
            (("public_security", "household"), self.households["dirt"].to_numpy()[live_h]),
            (("market_regulation", "entity"), self.entities["dirt"].to_numpy()[live_e]),
            (("emergency", "chemical_site"), self.sites["dirt"].to_numpy()),
            (("health", "referral"), self.referrals["dirt"].to_numpy(dtype=np.int8)),
        ):
            self._record(
                out, system, dataset, self.plans[(system, dataset)].counts(kinds), scope="in_table"
            )

    # ------------------------------------------------------------------ one day

    def step(self, day: int, files: bool = True) -> DayOut:
        out = DayOut(day=day)
        self._day_public_security(out, day)
        self._day_market(out, day)
        self._day_health(out, day)
        self._day_emergency(out, day)
        self._day_traffic(out, day)
        self._in_table(out)
        if files:
            self._day_hrss(out, day)
            self._day_civil_affairs(out, day)
            self._day_housing_fund(out, day)
            self._day_hotline(out, day)
        return out

    def _times(self, rng, day: int, n: int, hours=codes.OFFICE_HOURS) -> np.ndarray:
        secs = codes.seconds_in_day(rng, n, hours)
        return codes.day_start(self.start, day) + secs.astype("timedelta64[s]")

    def _alive(self) -> np.ndarray:
        return np.flatnonzero(self.people["status"].to_numpy() == "正常")

    def _day_public_security(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "public_security")
        p, h = self.people, self.households
        alive = self._alive()
        changed: list[np.ndarray] = []
        touched: list[np.ndarray] = []
        hh = p["hh"].to_numpy()
        # deaths, weighted towards the old
        nd = min(self.n(rng, 6), len(alive))
        age = (
            (np.datetime64(self.start, "D") - p["birth"].to_numpy()[alive])
            .astype("timedelta64[D]")
            .astype(np.int64)
        )
        w = (age / 365.25 + 1) ** 5
        dead = rng.choice(alive, size=nd, replace=False, p=w / w.sum()) if nd else alive[:0]
        p.loc[dead, "status"] = "死亡"
        changed.append(dead)
        touched.append(hh[dead])
        # moves out of the county
        alive = self._alive()
        no = min(self.n(rng, 20), len(alive))
        gone = rng.choice(alive, size=no, replace=False)
        p.loc[gone, "status"] = "迁出"
        changed.append(gone)
        touched.append(hh[gone])
        # whole households moving out
        h_before = len(h)
        live_h = np.flatnonzero(h["live"].to_numpy())
        nho = min(self.n(rng, 3), len(live_h))
        hout = rng.choice(live_h, size=nho, replace=False)
        members = np.flatnonzero(np.isin(hh, hout) & (p["status"].to_numpy() == "正常"))
        p.loc[members, "status"] = "迁出"
        changed.append(members)
        touched.append(hout)
        # moves inside the county: join a household elsewhere or found a new one
        alive = self._alive()
        nm = min(self.n(rng, 12), len(alive))
        movers = rng.choice(alive, size=nm, replace=False)
        new_home = rng.random(nm) < 0.05
        live_h = np.flatnonzero(h["live"].to_numpy())
        dest = live_h[rng.integers(0, len(live_h), nm)]
        touched.append(hh[movers])
        n_new = int(new_home.sum())
        if n_new:
            vil = rng.integers(0, len(self.v_code), n_new)
            first = len(h)
            serial = np.empty(n_new, dtype=np.int64)
            for i, v in enumerate(vil):
                self.hh_counter[v] += 1
                serial[i] = self.hh_counter[v]
            new_h = table(
                {
                    "household_id": np.char.add(self.v_code[vil], codes.zfill(serial, 4)),
                    "vil": vil,
                    "htype": "家庭户",
                    "address": self.addresses(rng, vil),
                    "live": True,
                    "members": 0,
                    "head": movers[new_home],
                    "dirt": self.plans[("public_security", "household")].assign(
                        rng,
                        table(
                            {
                                "head_id_number": p["id"].to_numpy()[movers[new_home]],
                                "village_code": self.v_code[vil],
                                "household_type": "家庭户",
                            }
                        ),
                    ),
                },
                index=np.arange(first, first + n_new),
            )
            h = self.households = pd.concat([h, new_h])
            dest[new_home] = np.arange(first, first + n_new)
        p.loc[movers, "hh"] = dest
        p.loc[movers, "vil"] = h["vil"].to_numpy()[dest]
        p.loc[movers, "address"] = h["address"].to_numpy()[dest]
        changed.append(movers)
        touched.append(dest)
        # births into existing households
        live_h = np.flatnonzero(h["live"].to_numpy() & (h["members"].to_numpy() >= 2))
        nb = self.n(rng, 8)
        if nb and len(live_h):
            bh = live_h[rng.integers(0, len(live_h), nb)]
            sex = np.where(rng.random(nb) < 0.52, "1", "2")
            birth = np.datetime64(self.day_date(day), "D") - rng.integers(0, 20, nb).astype(
                "timedelta64[D]"
            )
            addr = np.full(nb, self.profile.code, dtype="<U6")
            ids = self.new_ids(rng, addr, birth, sex, self.taken)
            heads = h["head"].to_numpy()[bh]
            surname = np.array([s[0] for s in p["name"].to_numpy()[heads]])
            babies = table(
                {
                    "id": ids,
                    "birth": birth,
                    "sex": sex,
                    "name": self.names(rng, sex, surname),
                    "eth": p["eth"].to_numpy()[heads],
                    "vil": h["vil"].to_numpy()[bh],
                    "phone": None,
                    "status": "正常",
                    "upd": "",
                    "hh": bh,
                    "address": h["address"].to_numpy()[bh],
                },
                index=np.arange(len(p), len(p) + nb),
            )
            babies["dirt"] = self.plans[("public_security", "resident")].assign(
                rng,
                table(
                    {
                        "id_number": ids,
                        "name": babies["name"],
                        "village_code": self.v_code[babies["vil"].to_numpy()],
                    }
                ),
            )
            p = self.people = pd.concat([p, babies])
            changed.append(babies.index.to_numpy())
            touched.append(bh)
        # phone number changes
        alive = self._alive()
        nph = min(self.n(rng, 560), len(alive))
        ph = rng.choice(alive, size=nph, replace=False)
        p.loc[ph, "phone"] = self.phones(rng, nph)
        changed.append(ph)
        # households: recount, delete the empty, correct some addresses
        live_h = np.flatnonzero(h["live"].to_numpy())
        fix = rng.choice(live_h, size=min(self.n(rng, 5), len(live_h)), replace=False)
        h.loc[fix, "address"] = self.addresses(rng, h["vil"].to_numpy()[fix])
        hids = np.unique(np.concatenate([*touched, fix]).astype(np.int64))
        before = h.loc[hids, ["members", "head", "address"]].copy()
        empty = self._refresh_households(hids)
        h.loc[empty, "live"] = False
        empty = empty[empty < h_before]  # founded and emptied the same day: never written
        heads_new = np.flatnonzero(
            np.isin(p["hh"].to_numpy(), fix) & (p["status"].to_numpy() == "正常")
        )
        p.loc[heads_new, "address"] = h["address"].to_numpy()[p["hh"].to_numpy()[heads_new]]
        changed.append(heads_new)
        pids = np.unique(np.concatenate(changed).astype(np.int64))
        p.loc[pids, "upd"] = codes.fmt_ts(np.sort(self._times(rng, day, len(pids))))
        out.sql[("public_security", "resident")] = Delta(self._resident_rows(out, pids))
        after = h.loc[hids, ["members", "head", "address"]]
        differs = (after != before).any(axis=1).to_numpy() | (hids >= h_before) | np.isin(hids, fix)
        keep = hids[h.loc[hids, "live"].to_numpy() & differs]
        deleted = h.loc[empty, "household_id"].tolist()
        out.sql[("public_security", "household")] = Delta(self._household_rows(out, keep), deleted)

    def _day_market(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "market_regulation")
        e = self.entities
        nn = self.n(rng, 15)
        kinds = rng.choice(["91", "92", "93"], size=nn, p=[0.3, 0.65, 0.05]).astype("<U2")
        new = self._new_entities(rng, kinds, day)
        new["established"] = np.datetime64(self.day_date(day), "D")
        new.index = np.arange(len(e), len(e) + nn)
        new["dirt"] = self.plans[("market_regulation", "entity")].assign(
            rng, new.assign(village_code=self.v_code[new["vil"].to_numpy()])
        )
        e = self.entities = pd.concat([e, new]) if nn else e
        live = np.flatnonzero(
            e["live"].to_numpy()
            & (e["status"].to_numpy() == "存续")
            & ~np.isin(e["dept"].to_numpy(), ["N2", "N3"])
        )
        live = live[~np.isin(live, self.chem_entities) & (live < len(e) - nn)]
        ns, nc, ndel = self.n(rng, 5), self.n(rng, 3), self.n(rng, 2)
        pick = rng.choice(live, size=min(len(live), ns + nc + ndel), replace=False)
        closed, varied, dropped = pick[:ns], pick[ns : ns + nc], pick[ns + nc :]
        new_status = np.where(rng.random(len(closed)) < 0.9, "注销", "吊销")
        e.loc[closed, "status"] = new_status
        items = np.array(vocab.CHANGE_ITEMS)[rng.integers(0, len(vocab.CHANGE_ITEMS), len(varied))]
        moved = varied[items == "住所变更"]
        e.loc[moved, "address"] = self.addresses(rng, e["vil"].to_numpy()[moved])
        e.loc[dropped, "live"] = False
        eids = np.concatenate([new.index.to_numpy(), closed, varied]).astype(np.int64)
        types = np.concatenate(
            [np.full(nn, "设立"), np.full(len(closed), "注销"), np.full(len(varied), "变更")]
        )
        citems = np.concatenate(
            [np.full(nn, None, dtype=object), new_status.astype(object), items.astype(object)]
        )
        at = self._times(rng, day, len(eids))
        order = np.lexsort((eids, at))
        out.sql[("market_regulation", "entity_change")] = Delta(
            self._changes(out, eids[order], types[order], citems[order], codes.fmt_ts(at[order]))
        )
        upd = np.unique(np.concatenate([new.index.to_numpy(), closed, varied]).astype(np.int64))
        deleted = list(self._stored_credit(dropped))
        out.sql[("market_regulation", "entity")] = Delta(self._entity_rows(out, upd), deleted)

    def _orgs(self, level: np.ndarray, vil: np.ndarray, rng) -> np.ndarray:
        county, city, prov = self.profile.name, self.profile.city.name, self.profile.province.name
        l3 = [f"{county}人民医院", f"{county}中医医院", f"{county}妇幼保健院"]
        l4 = [f"{city}中心医院", f"{city}第一医院", f"{city}妇幼保健院"]
        l5 = [f"{prov}立医院", f"{prov}肿瘤医院", "中国医学科学院阜外医院"]
        pick = rng.integers(0, 3, len(level))
        res = []
        for lv, v, k in zip(level, vil, pick, strict=True):
            town = self.v_town[v]
            res.append(
                {
                    1: f"{self.v_place[v]}卫生室",
                    2: f"{town}社区卫生服务中心" if town.endswith("街道") else f"{town}卫生院",
                    3: l3[k],
                    4: l4[k],
                    5: l5[k],
                }[int(lv)]
            )
        return np.array(res, dtype=object)

    def _day_health(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "health")
        p = self.people
        alive = self._alive()
        n = self.n(rng, 250)
        pat = alive[rng.integers(0, len(alive), n)]
        req = rng.choice([1, 2, 3], size=n, p=[0.35, 0.45, 0.2])
        cons = np.minimum(5, req + rng.choice([1, 2], size=n, p=[0.75, 0.25]))
        vil = p["vil"].to_numpy()[pat]
        at = np.sort(self._times(rng, day, n))
        done = at + (rng.exponential(3 * 3600, n)).astype(np.int64).astype("timedelta64[s]")
        end = codes.day_start(self.start, day) + DAY
        completed = codes.fmt_ts(done).astype(object)
        completed[done >= end] = None
        df = self.frame(
            "health",
            "consultation",
            {
                "consultation_id": np.arange(self.consultation_next, self.consultation_next + n),
                "patient_id_number": p["id"].to_numpy()[pat],
                "patient_name": p["name"].to_numpy()[pat],
                "village_code": self.v_code[vil],
                "requesting_level": req,
                "requesting_org": self._orgs(req, vil, rng),
                "consulting_level": cons,
                "consulting_org": self._orgs(cons, vil, rng),
                "specialty": np.array(vocab.SPECIALTIES)[
                    rng.integers(0, len(vocab.SPECIALTIES), n)
                ],
                "consult_type": np.array(vocab.CONSULT_TYPES)[
                    rng.choice(4, n, p=vocab.CONSULT_TYPE_WEIGHTS)
                ],
                "requested_at": codes.fmt_ts(at),
                "completed_at": completed,
            },
        )
        self.consultation_next += n
        plan = self.plans[("health", "consultation")]
        kinds = plan.assign(rng, df)
        out.sql[("health", "consultation")] = Delta(
            self._emit(out, "health", "consultation", df, kinds)
        )
        # referrals: new ones (申请) and progress of open ones
        r = self.referrals
        open_ = np.flatnonzero(np.isin(r["status"].to_numpy(), ["申请", "接收"]))
        nu = min(self.n(rng, 100), len(open_))
        adv = rng.choice(open_, size=nu, replace=False) if nu else open_[:0]
        status = r["status"].to_numpy()[adv]
        u = rng.random(nu)
        nxt = np.where(status == "申请", np.where(u < 0.1, "取消", "接收"), "完成")
        r.loc[adv, "status"] = nxt
        r.loc[adv, "updated_at"] = codes.fmt_ts(np.sort(self._times(rng, day, nu)))
        nr = self.n(rng, 80)
        pat = alive[rng.integers(0, len(alive), nr)]
        up = rng.random(nr) < 0.65
        frm = np.where(up, rng.choice([1, 2, 3], nr, p=[0.3, 0.5, 0.2]), rng.choice([3, 4, 5], nr))
        to = np.where(up, np.minimum(5, frm + 1), frm - 1)
        ts = codes.fmt_ts(np.sort(self._times(rng, day, nr)))
        start_id = int(r["referral_id"].max()) + 1 if len(r) else 1
        new = self.frame(
            "health",
            "referral",
            {
                "referral_id": np.arange(start_id, start_id + nr),
                "patient_id_number": p["id"].to_numpy()[pat],
                "from_level": frm,
                "to_level": to,
                "direction": np.where(up, "上转", "下转"),
                "diagnosis": np.array(vocab.DIAGNOSES)[rng.integers(0, len(vocab.DIAGNOSES), nr)],
                "status": "申请",
                "referred_at": ts,
                "updated_at": ts,
            },
        )
        rplan = self.plans[("health", "referral")]
        new_kinds = rplan.assign(rng, new)
        new = rplan.apply(new, new_kinds).assign(dirt=new_kinds)  # stored dirty, like a real DB
        new.index = np.arange(len(r), len(r) + nr)
        r = self.referrals = pd.concat([r, new]) if len(r) else new
        rows = r.loc[np.concatenate([adv, new.index.to_numpy()]).astype(np.int64)]
        kinds = rows["dirt"].to_numpy(dtype=np.int8)
        self._record(out, "health", "referral", rplan.counts(kinds))
        out.sql[("health", "referral")] = Delta(rows.drop(columns="dirt").reset_index(drop=True))

    def _day_emergency(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "emergency")
        s = self.sites
        n = self.n(rng, 3000) if len(s) else 0
        site = rng.integers(0, len(s), n)
        sensors = s["sensor_count"].to_numpy()[site]
        sensor_no = (rng.random(n) * sensors).astype(np.int64) + 1
        atype = rng.integers(0, len(vocab.ALARM_TYPES), n)
        thr = np.array(vocab.ALARM_THRESHOLDS)[atype]
        level = np.where(rng.random(n) < 0.2, 1, 2)
        reading = np.round(
            thr * np.where(level == 1, rng.uniform(1.2, 1.6, n), rng.uniform(1.0, 1.2, n)), 3
        )
        at = np.sort(self._times(rng, day, n, codes.ALL_DAY))
        end = codes.day_start(self.start, day) + DAY
        ack = at + rng.exponential(600, n).astype(np.int64).astype("timedelta64[s]")
        res = ack + rng.exponential(1800, n).astype(np.int64).astype("timedelta64[s]")
        ack_s, res_s = codes.fmt_ts(ack).astype(object), codes.fmt_ts(res).astype(object)
        ack_s[ack >= end] = None
        res_s[res >= end] = None
        sid = s["site_id"].to_numpy()[site]
        df = self.frame(
            "emergency",
            "sensor_alarm",
            {
                "alarm_id": np.arange(self.alarm_next, self.alarm_next + n),
                "site_id": sid,
                "sensor_id": np.char.add(
                    np.char.add(sid.astype(str), "-"), codes.zfill(sensor_no, 3)
                ),
                "alarm_type": np.array(vocab.ALARM_TYPES)[atype],
                "alarm_level": level,
                "reading": reading,
                "threshold": thr,
                "alarm_at": codes.fmt_ts(at),
                "acknowledged_at": ack_s,
                "resolved_at": res_s,
            },
        )
        self.alarm_next += n
        kinds = self.plans[("emergency", "sensor_alarm")].assign(rng, df)
        out.sql[("emergency", "sensor_alarm")] = Delta(
            self._emit(out, "emergency", "sensor_alarm", df, kinds)
        )
        # a site occasionally stops or restarts production
        flips = np.flatnonzero(rng.random(len(s)) < 0.01)
        s.loc[flips, "status"] = np.where(s["status"].to_numpy()[flips] == "在产", "停产", "在产")
        out.sql[("emergency", "chemical_site")] = Delta(self._site_rows(out, flips))

    # ------------------------------------------------------------------ API: traffic police

    def _day_traffic(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "traffic_police")
        p = self.people
        contract = self.contract("traffic_police", "violation")
        src = {c.name: c.at_source for c in contract.columns}
        v = self.violations
        # handled flags of earlier, open violations
        upd_rows = np.array([], dtype=np.int64)
        if v is not None and len(v):
            cand = np.flatnonzero(
                (v[src["handled"]].to_numpy() == "0") & ~v["dupkey"].to_numpy(dtype=bool)
            )
            k = min(self.n(rng, 100), len(cand))
            upd_rows = np.sort(rng.choice(cand, size=k, replace=False))
            v.loc[upd_rows, src["handled"]] = "1"
            v.loc[upd_rows, src["updated_at"]] = codes.fmt_ts(np.sort(self._times(rng, day, k)))
        n = self.n(rng, 600)
        adults = self._alive()
        adults = adults[
            p["birth"].to_numpy()[adults]
            < np.datetime64(self.day_date(day), "D") - np.timedelta64(18 * 365, "D")
        ]
        drv = adults[rng.integers(0, len(adults), n)]
        gx = np.sort(self._times(rng, day, n, codes.ALL_DAY))
        day0 = codes.day_start(self.start, day)
        late = rng.random(n) < LATE_RATE[("traffic_police", "violation")]
        wf = day0 + ((gx - day0).astype(np.int64) * rng.random(n)).astype(np.int64).astype(
            "timedelta64[s]"
        )
        wf[late] = gx[late] - (
            rng.integers(1, 6, int(late.sum())) * 86400 + rng.integers(0, 86400, int(late.sum()))
        ).astype("timedelta64[s]")
        beh = rng.choice(len(vocab.VIOLATIONS), size=n, p=vocab.VIOLATION_WEIGHTS)
        fine = np.array([vocab.VIOLATIONS[b][1] for b in beh], dtype=float)
        points = np.array([vocab.VIOLATIONS[b][2] for b in beh], dtype=np.int64)
        vil = rng.integers(0, len(self.v_code), n)
        road = np.array(vocab.ROAD_PARTS)[rng.integers(0, len(vocab.ROAD_PARTS), n)]
        letters = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))
        plate_body = np.char.add(letters[rng.integers(0, 24, n)], codes.random_digits(rng, n, 4))
        own = rng.random(n) < 0.85
        letter = np.where(own, self.plate_letter, letters[rng.integers(0, 24, n)])
        plate = np.char.add(np.char.add(self.prov_abbr, letter), plate_body)
        serial = np.arange(self.violation_serial + 1, self.violation_serial + n + 1)
        self.violation_serial += n
        df = self.frame(
            "traffic_police",
            "violation",
            {
                "violation_no": np.char.add(f"{self.profile.code}", codes.zfill(serial, 10)),
                "plate_no": plate,
                "plate_type": np.array(vocab.PLATE_TYPES)[
                    rng.choice(4, n, p=vocab.PLATE_TYPE_WEIGHTS)
                ],
                "owner_name": p["name"].to_numpy()[drv],
                "driver_id_number": p["id"].to_numpy()[drv],
                "violated_at": codes.fmt_ts(wf),
                "location": np.char.add(np.char.add(self.v_town[vil], self.v_place[vil]), road),
                "village_code": self.v_code[vil],
                "violation_code": [vocab.VIOLATIONS[b][0] for b in beh],
                "fine": fine,
                "points": points,
                "handled": np.where(rng.random(n) < 0.2, "1", "0"),
                "updated_at": codes.fmt_ts(gx),
            },
        )
        plan = self.plans[("traffic_police", "violation")]
        kinds = plan.assign(rng, df)
        dirty = plan.apply(df, kinds)
        dup = (rng.random(n) < DUPLICATE_RATE) & (kinds == 0)
        dirty["dirt"] = kinds
        dirty["dupkey"] = dup
        dirty["late"] = late
        idx = np.repeat(np.arange(n), 1 + dup.astype(np.int64))
        new = dirty.iloc[idx].rename(columns=src).reset_index(drop=True)
        self._record(
            out,
            "traffic_police",
            "violation",
            [
                *plan.counts(kinds),
                ("duplicate_row", "*", int(dup.sum())),
                ("late_row", "violated_at", int(late.sum())),
            ],
        )
        if v is not None and len(v):
            old = v.loc[upd_rows]
            self._record(
                out, "traffic_police", "violation", plan.counts(old["dirt"].to_numpy(dtype=np.int8))
            )
            self.violations = pd.concat([v, new], ignore_index=True)
        else:
            old = new.iloc[:0]
            self.violations = new
        changed = pd.concat([old, new], ignore_index=True) if len(old) else new
        out.api[("traffic_police", "violation")] = Delta(
            changed.drop(columns=["dirt", "dupkey", "late"]), list(old[src["violation_no"]])
        )

    # ------------------------------------------------------------------ export files

    def _day_hrss(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "hrss")
        p = self.people
        d = self.day_date(day)
        alive = self._alive()
        age = (np.datetime64(d, "D") - p["birth"].to_numpy()[alive]).astype(
            "timedelta64[D]"
        ).astype(np.int64) / 365.25
        adults = alive[(age >= 16) & (age < 75)]
        n = self.n(rng, 8000)
        who = adults[rng.integers(0, len(adults), n)]
        w = np.array(vocab.INSURANCE_WEIGHTS)
        itype = rng.choice(len(w), size=n, p=w / w.sum())
        employed = np.array(vocab.INSURANCE_EMPLOYED)[itype]
        month_prev = rng.random(n) < 0.3
        this_m = f"{d.year:04d}-{d.month:02d}"
        prev = date(d.year, d.month, 1) - timedelta(days=1)
        months = np.where(month_prev, f"{prev.year:04d}-{prev.month:02d}", this_m)
        employers = np.flatnonzero(
            self.entities["live"].to_numpy()
            & (self.entities["dept"].to_numpy() == "91")
            & (self.entities["dirt"].to_numpy() == 0)
        )
        emp = (
            self.entities["credit_code"]
            .to_numpy()[employers[rng.integers(0, max(1, len(employers)), n)]]
            .astype(object)
            if len(employers)
            else np.full(n, None, dtype=object)
        )
        emp[~employed] = None
        base = np.where(
            employed,
            np.round(rng.uniform(3800, 12000, n), 2),
            np.array([100.0, 200.0, 300.0, 500.0, 1000.0])[rng.integers(0, 5, n)],
        )
        df = self.frame(
            "hrss",
            "insured_person",
            {
                "id_number": p["id"].to_numpy()[who],
                "name": p["name"].to_numpy()[who],
                "insurance_type": np.array(vocab.INSURANCE_TYPES)[itype],
                "employer_credit_code": emp,
                "contribution_base": base,
                "contribution_month": months,
                "status": np.array(vocab.INSURANCE_STATUSES)[
                    rng.choice(3, n, p=[0.93, 0.05, 0.02])
                ],
            },
        )
        df = df.drop_duplicates(subset=["id_number", "insurance_type", "contribution_month"])
        df = df.reset_index(drop=True)
        kinds = self.plans[("hrss", "insured_person")].assign(rng, df)
        out.files[("hrss", "insured_person")] = self._emit(
            out, "hrss", "insured_person", df, kinds, rng, dup=True
        )

    def _day_civil_affairs(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "civil_affairs")
        h, p = self.households, self.people
        live = np.flatnonzero(h["live"].to_numpy())
        n = min(self.n(rng, 300), len(live))
        hs = rng.choice(live, size=n, replace=False)
        head = h["head"].to_numpy()[hs]
        w = np.array(vocab.ASSISTANCE_WEIGHTS)
        atype = rng.choice(3, size=n, p=w)
        members = h["members"].to_numpy()[hs]
        per = np.array([850.0, 680.0, 1100.0])[atype]
        d = np.datetime64(self.day_date(day), "D")
        approved = d - rng.integers(0, 1500, n).astype("timedelta64[D]")
        df = self.frame(
            "civil_affairs",
            "assistance",
            {
                "id_number": p["id"].to_numpy()[head],
                "name": p["name"].to_numpy()[head],
                "assistance_type": np.array(vocab.ASSISTANCE_TYPES)[atype],
                "member_count": np.where(atype == 2, 1, np.maximum(members, 1)),
                "monthly_amount": np.round(
                    per * np.where(atype == 2, 1, np.maximum(members, 1)), 2
                ),
                "village_code": self.v_code[h["vil"].to_numpy()[hs]],
                "approved_date": codes.fmt_date(approved),
                "status": np.where(rng.random(n) < 0.9, "在保", "停保"),
            },
        )
        kinds = self.plans[("civil_affairs", "assistance")].assign(rng, df)
        out.files[("civil_affairs", "assistance")] = self._emit(
            out, "civil_affairs", "assistance", df, kinds, rng, dup=True
        )

    def _day_housing_fund(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "housing_fund")
        p, e = self.people, self.entities
        d = self.day_date(day)
        alive = self._alive()
        age = (np.datetime64(d, "D") - p["birth"].to_numpy()[alive]).astype(
            "timedelta64[D]"
        ).astype(np.int64) / 365.25
        workers = alive[(age >= 20) & (age < 60)]
        n = self.n(rng, 3000)
        who = np.sort(workers[rng.integers(0, len(workers), n)])
        employers = np.flatnonzero(
            e["live"].to_numpy() & (e["dept"].to_numpy() == "91") & (e["dirt"].to_numpy() == 0)
        )
        emp = (
            e["credit_code"].to_numpy()[employers[who % max(1, len(employers))]]
            if len(employers)
            else np.full(n, None, dtype=object)
        )
        ymd = d.strftime("%Y%m%d")
        prev = date(d.year, d.month, 1) - timedelta(days=1)
        df = self.frame(
            "housing_fund",
            "deposit",
            {
                "serial_no": np.char.add(f"GJJ{ymd}", codes.zfill(np.arange(1, n + 1), 6)),
                "account_no": np.char.add(self.profile.code, codes.zfill(who, 9)),
                "id_number": p["id"].to_numpy()[who],
                "name": p["name"].to_numpy()[who],
                "employer_credit_code": emp,
                "amount": np.round(rng.uniform(300, 2400, n), 2),
                "deposit_month": np.where(
                    rng.random(n) < 0.8,
                    f"{d.year:04d}-{d.month:02d}",
                    f"{prev.year:04d}-{prev.month:02d}",
                ),
                "paid_date": d.isoformat(),
            },
        )
        kinds = self.plans[("housing_fund", "deposit")].assign(rng, df)
        out.files[("housing_fund", "deposit")] = self._emit(
            out, "housing_fund", "deposit", df, kinds, rng, dup=True
        )

    def _day_hotline(self, out: DayOut, day: int) -> None:
        rng = self.rng(day, "hotline")
        p = self.people
        n = self.n(rng, 450)
        alive = self._alive()
        who = alive[rng.integers(0, len(alive), n)]
        cats = list(vocab.HOTLINE_CATEGORIES)
        ci = rng.choice(len(cats), size=n, p=vocab.HOTLINE_WEIGHTS)
        at = self._times(rng, day, n, codes.ALL_DAY)
        late = rng.random(n) < LATE_RATE[("hotline", "ticket")]
        at[late] -= (rng.integers(1, 4, int(late.sum())) * 86400).astype("timedelta64[s]")
        order = np.argsort(at, kind="stable")
        at, late, who, ci = at[order], late[order], who[order], ci[order]
        resp = at + rng.exponential(2 * 3600, n).astype(np.int64).astype("timedelta64[s]")
        done = resp + rng.exponential(20 * 3600, n).astype(np.int64).astype("timedelta64[s]")
        end = codes.day_start(self.start, day) + DAY
        status = np.where(done < end, "已办结", np.where(resp < end, "办理中", "已受理"))
        resp_s, done_s = codes.fmt_ts(resp).astype(object), codes.fmt_ts(done).astype(object)
        resp_s[resp >= end] = None
        done_s[done >= end] = None
        sat = np.array(vocab.SATISFACTION, dtype=object)[rng.choice(3, n, p=[0.7, 0.22, 0.08])]
        sat[status != "已办结"] = None
        pick = rng.integers(0, 3, n)
        content = [vocab.HOTLINE_CATEGORIES[cats[c]][1][k] for c, k in zip(ci, pick, strict=True)]
        vil = p["vil"].to_numpy()[who]
        ymd = codes.replace(codes.fmt_date(at), "-", "")
        phone = p["phone"].to_numpy()[who].astype(object)
        missing = np.fromiter((x is None for x in phone), bool, len(phone))
        phone[missing] = self.phones(rng, int(missing.sum()))
        df = self.frame(
            "hotline",
            "ticket",
            {
                "ticket_no": np.char.add(
                    np.char.add(ymd, codes.zfill(np.full(n, day), 3)),
                    codes.zfill(np.arange(1, n + 1), 5),
                ),
                "received_at": codes.fmt_ts(at),
                "caller_phone": phone,
                "caller_name": p["name"].to_numpy()[who],
                "category": np.array(cats)[ci],
                "content": [f"{self.v_place[v]}{c}" for v, c in zip(vil, content, strict=True)],
                "village_code": self.v_code[vil],
                "handling_department": [vocab.HOTLINE_CATEGORIES[cats[c]][0] for c in ci],
                "status": status,
                "responded_at": resp_s,
                "resolved_at": done_s,
                "satisfaction": sat,
            },
        )
        kinds = self.plans[("hotline", "ticket")].assign(rng, df)
        self._record(out, "hotline", "ticket", [("late_row", "received_at", int(late.sum()))])
        out.files[("hotline", "ticket")] = self._emit(
            out, "hotline", "ticket", df, kinds, rng, dup=True
        )
