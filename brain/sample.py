"""A deterministic synthetic district, delivered as the messy files a district data bureau receives.

`brain sample --scale small|medium|large --out DIR` writes admin units (GeoPackage, CGCS2000), building
footprints (GeoJSON), people registers (UTF-8 CSV, GBK CSV with Chinese headers, Excel), enterprises
(GCJ-02), party registers, events (BD-09, mixed date formats), devices (CGCS2000 Gauss-Krüger x/y),
sensor readings, a rainfall forecast and a DEM (GeoTIFF), the street network (GeoJSON lines) and water (a river's
reaches, a 河涌 and patrol routes; GeoPackage), and DIR/manifest.yaml describing all of it.
Dirt is planted on purpose and counted in DIR/planted.json, so tests can check that none of it is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import shapely
import yaml

from brain.coords import wgs84_to_bd09, wgs84_to_gcj02

SEED = 20260101
LON0, LAT0 = 113.30, 23.08  # south-west corner of the fictional 明湖区
CELL_DX, CELL_DY = 0.0040, 0.0036  # one grid cell ≈ 410 m × 400 m
DISTRICT = ("440199", "明湖区")


@dataclass(frozen=True)
class Scale:
    """Sizes of one sample scale; admin layout is (columns, rows) at each level."""

    streets: tuple[int, int]
    communities: tuple[int, int]
    grids: tuple[int, int]
    buildings: int
    households: int
    events: int
    enterprises: int
    devices: int
    readings_per_station: int


SCALES = {
    "small": Scale((2, 1), (2, 1), (2, 2), 400, 1_200, 800, 150, 60, 24),
    "medium": Scale((3, 2), (3, 2), (3, 3), 10_000, 38_000, 20_000, 3_000, 600, 24),
    "large": Scale((5, 2), (3, 3), (4, 4), 100_000, 380_000, 200_000, 20_000, 3_000, 24),
}

STREET_NAMES = ["东湖", "西岭", "南岗", "北山", "中和", "新城", "滨江", "龙洞", "白沙", "金湾", "望江", "长岭"]
COMMUNITY_NAMES = ["翠竹", "丹桂", "海棠", "青松", "玉兰", "紫荆", "芙蓉", "银杏", "红棉", "木棉", "梧桐", "杜鹃",
                   "兰亭", "荷塘", "柳岸", "梅园", "枫林", "竹韵", "桃源", "樱花"]
ROAD_NAMES = ["明湖", "东风", "建设", "解放", "人民", "中山", "文明", "和平", "青年", "光明", "振兴", "幸福",
              "团结", "新华", "朝阳", "胜利", "五一", "南华", "长寿", "宝华", "永安", "康乐", "福寿", "培正"]
CROSS_NAMES = ["文昌", "桂香", "榕荫", "竹丝", "荔湾", "芳草", "清风", "朝阳", "兴隆", "长寿"]
ROAD_SUFFIX = ["路", "街", "大道", "一路", "二路", "三路"]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文浩宇轩梓涵子怡欣然俊晨")
PROVINCES = ["广东", "湖南", "广西", "江西", "四川", "河南", "湖北", "福建", "贵州", "重庆", "海南", "安徽"]
EVENT_TYPES = {
    "服务诉求": ["证照办理", "社保咨询", "养老服务", "就业帮扶"],
    "矛盾纠纷": ["邻里纠纷", "物业纠纷", "劳资纠纷", "婚姻家庭"],
    "城市管理": ["占道经营", "乱堆乱放", "违章搭建", "道路破损", "垃圾清运"],
    "安全隐患": ["消防通道堵塞", "燃气隐患", "高空坠物", "内涝积水", "电动车违规充电"],
}
# Estate (小区) names: every third compound of the sample has one, its buildings named "<estate><n>栋".
ESTATE_WORDS = ["翠湖", "锦绣", "碧桂", "金沙", "丽景", "华庭", "怡景", "御景", "雅苑", "春晖", "绿荫", "金域", "紫荆",
                "枫林", "桃源", "星河", "海棠", "凤凰", "东湖", "云山"]
ESTATE_SUFFIX = ["花园", "小区", "苑", "新村", "家园"]
DATE_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y年%m月%d日 %H时%M分", "%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S"]
FULLWIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


class Planted:
    """Counts of dirt planted per source and reason, written to planted.json."""

    def __init__(self):
        self.counts: dict[str, dict[str, int]] = {}

    def add(self, source: str, reason: str, n: int) -> None:
        """Record n planted rows of `reason` in `source`."""
        if n:
            by = self.counts.setdefault(source, {})
            by[reason] = by.get(reason, 0) + int(n)


def _pick(rng: np.random.Generator, n: int, frac: float, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of about frac·n distinct rows (at least one), avoiding `exclude`."""
    pool = np.arange(n) if exclude is None else np.setdiff1d(np.arange(n), exclude)
    k = min(len(pool), max(1, int(round(n * frac))))
    return np.sort(rng.choice(pool, size=k, replace=False))


class Layout:
    """The admin lattice: jittered grid cells grouped into communities, streets and the district."""

    def __init__(self, scale: Scale, rng: np.random.Generator):
        self.scale = scale
        sx, sy = scale.streets
        cx, cy = scale.communities
        gx, gy = scale.grids
        self.nx, self.ny = sx * cx * gx, sy * cy * gy
        jitter = rng.uniform(-0.22, 0.22, size=(self.ny + 1, self.nx + 1, 2))
        ii, jj = np.meshgrid(np.arange(self.nx + 1), np.arange(self.ny + 1))
        self.vx = LON0 + (ii + jitter[..., 0]) * CELL_DX
        self.vy = LAT0 + (jj + jitter[..., 1]) * CELL_DY
        col, row = np.meshgrid(np.arange(self.nx), np.arange(self.ny))
        self.col, self.row = col.ravel(), row.ravel()
        street_ix = (self.row // (cy * gy)) * sx + self.col // (cx * gx)
        comm_local = ((self.row // gy) % cy) * cx + (self.col // gx) % cx
        grid_local = (self.row % gy) * gx + self.col % gx
        self.street_code = np.array([f"{DISTRICT[0]}{s + 1:03d}" for s in street_ix])
        self.community_code = np.array([f"{s}{c + 1:03d}" for s, c in zip(self.street_code, comm_local)])
        self.grid_code = np.array([f"{c}{g + 1:03d}" for c, g in zip(self.community_code, grid_local)])
        ring = np.stack([
            np.stack([self.vx[self.row, self.col], self.vy[self.row, self.col]], -1),
            np.stack([self.vx[self.row, self.col + 1], self.vy[self.row, self.col + 1]], -1),
            np.stack([self.vx[self.row + 1, self.col + 1], self.vy[self.row + 1, self.col + 1]], -1),
            np.stack([self.vx[self.row + 1, self.col], self.vy[self.row + 1, self.col]], -1),
        ], axis=1)
        self.cells = shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1))
        self.street_ix = street_ix

    def points_in_cells(self, rng: np.random.Generator, cells: np.ndarray, margin: float = 0.12):
        """Random points strictly inside the given cells (bilinear in each jittered quad)."""
        u = rng.uniform(margin, 1 - margin, len(cells))
        v = rng.uniform(margin, 1 - margin, len(cells))
        r, c = self.row[cells], self.col[cells]

        def lerp(a):
            bottom = a[r, c] * (1 - u) + a[r, c + 1] * u
            top = a[r + 1, c] * (1 - u) + a[r + 1, c + 1] * u
            return bottom * (1 - v) + top * v

        return lerp(self.vx), lerp(self.vy)

    def units(self) -> dict[str, pd.DataFrame]:
        """Admin units per level as frames of code, name, parent_code, geometry."""
        grids = pd.DataFrame({"code": self.grid_code, "parent_code": self.community_code, "geometry": self.cells})
        grids["name"] = [f"第{int(c[-3:])}网格" for c in grids["code"]]
        out = {"grid": grids}
        for level, key, parent, namer in (
            ("community", "community_code", "street_code",
             lambda code, i: f"{COMMUNITY_NAMES[i % len(COMMUNITY_NAMES)]}{'' if i < len(COMMUNITY_NAMES) else i // len(COMMUNITY_NAMES) + 1}社区"),
            ("street", "street_code", None, lambda code, i: f"{STREET_NAMES[i % len(STREET_NAMES)]}街道"),
        ):
            codes = getattr(self, key)
            uniq = sorted(set(codes))
            geoms = [shapely.coverage_union_all(self.cells[codes == u]) for u in uniq]
            parents = [u[:-3] for u in uniq] if parent else [DISTRICT[0]] * len(uniq)
            out[level] = pd.DataFrame({"code": uniq, "name": [namer(u, i) for i, u in enumerate(uniq)],
                                       "parent_code": parents, "geometry": geoms})
        out["district"] = pd.DataFrame({"code": [DISTRICT[0]], "name": [DISTRICT[1]], "parent_code": [None],
                                        "geometry": [shapely.coverage_union_all(self.cells)]})
        return out

    def outside_point(self, rng: np.random.Generator, n: int):
        """Points well outside the district (a neighbouring district's records)."""
        return (LON0 + self.nx * CELL_DX + rng.uniform(0.05, 0.2, n), LAT0 + rng.uniform(0, self.ny * CELL_DY, n))


def _fmt_dates(rng: np.random.Generator, ts: pd.Series) -> list[str]:
    fmts = rng.integers(0, len(DATE_FORMATS), len(ts))
    return ["" if pd.isna(t) else t.strftime(DATE_FORMATS[f]) for t, f in zip(ts, fmts)]


def _id_numbers(rng: np.random.Generator, birth: pd.Series, male: np.ndarray) -> np.ndarray:
    """18-digit resident ID numbers with a valid ISO 7064 MOD 11-2 check digit."""
    n = len(birth)
    region = rng.choice(["440106", "440104", "430102", "450103", "360102", "510104"], n)
    seq = rng.integers(0, 500, n) * 2 + male.astype(int)  # odd sequence = male
    body = np.char.add(np.char.add(region, birth.dt.strftime("%Y%m%d").to_numpy().astype(str)),
                       np.char.zfill(seq.astype(str), 3))
    digits = np.frombuffer("".join(body).encode(), dtype=np.uint8).reshape(n, 17) - 48
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = np.array(list("10X98765432"))[(digits * weights).sum(1) % 11]
    return np.char.add(body, check)


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    s = rng.choice(SURNAMES, n)
    g1 = rng.choice(GIVEN, n)
    g2 = np.where(rng.random(n) < 0.6, rng.choice(GIVEN, n), "")
    return np.char.add(np.char.add(s, g1), g2)


def _phones(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.char.add(rng.choice(["13", "15", "17", "18", "19"], n), np.char.zfill(rng.integers(0, 10**9, n).astype(str), 9))


class SampleWriter:
    """Generates one sample into a directory."""

    def __init__(self, scale: str, out: Path, progress: Callable[[str], None] = lambda s: None):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
        self.scale_name, self.scale = scale, SCALES[scale]
        self.out = Path(out)
        self.rng = np.random.default_rng(SEED)
        self.planted = Planted()
        self.progress = progress
        self.t0 = datetime(2026, 10, 1)

    # -- admin units --------------------------------------------------------------------------------------
    def admin_units(self) -> None:
        """admin_units.gpkg, one layer per level, in CGCS2000 (EPSG:4490), with planted dirt in grids."""
        import geopandas as gpd
        import pyogrio

        self.layout = Layout(self.scale, self.rng)
        units = self.layout.units()
        grids = units["grid"]
        # A ring with a zero-width spike: invalid, but make_valid recovers the same cell.
        g0 = shapely.get_coordinates(grids.at[0, "geometry"])
        spike = np.array([g0[0], g0[1], [g0[1][0] + 0.002, g0[1][1] - 0.0005], g0[1], g0[2], g0[3], g0[0]])
        grids.at[0, "geometry"] = shapely.Polygon(spike)
        self.planted.add("units_grid", "repaired:geometry", 1)
        extra = [
            {**grids.iloc[1].to_dict()},  # the same grid delivered twice
            {"code": f"{DISTRICT[0]}999999999", "name": "待撤销网格", "parent_code": f"{DISTRICT[0]}999999",
             "geometry": shapely.box(LON0 - 0.05, LAT0 - 0.05, LON0 - 0.045, LAT0 - 0.045)},
            {"code": f"{grids.at[2, 'parent_code']}998", "name": "画错的网格", "parent_code": grids.at[2, "parent_code"],
             "geometry": shapely.Polygon([(LON0, LAT0), (LON0 + 0.001, LAT0 + 0.001), (LON0 + 0.002, LAT0 + 0.002)])},
        ]
        self.planted.add("units_grid", "duplicate-id", 1)
        self.planted.add("units_grid", "parent-unknown", 1)
        self.planted.add("units_grid", "geometry-invalid", 1)
        units["grid"] = pd.concat([grids, pd.DataFrame(extra)], ignore_index=True)
        path = self.out / "admin_units.gpkg"
        path.unlink(missing_ok=True)
        # GeoPackage stamps the write time into gpkg_contents; pin it so the sample is reproducible.
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2026-01-01T00:00:00Z"})
        for level in ("district", "street", "community", "grid"):
            df = units[level].rename(columns={"code": "code", "name": "name", "parent_code": "parent"})
            gdf = gpd.GeoDataFrame(df[["code", "name", "parent", "geometry"]], geometry="geometry", crs="EPSG:4490")
            gdf.to_file(path, layer=level, driver="GPKG", engine="pyogrio")
        self.units = units

    # -- buildings ----------------------------------------------------------------------------------------
    def buildings(self) -> None:
        """buildings.geojson: footprints with 门牌 addresses; some bow-ties, slivers, nulls, duplicates."""
        import geopandas as gpd

        rng, lay, n = self.rng, self.layout, self.scale.buildings
        cells = rng.integers(0, len(lay.cells), n)
        cx, cy = lay.points_in_cells(rng, cells, margin=0.1)
        w = rng.uniform(0.00012, 0.00035, n)
        h = rng.uniform(0.00010, 0.00025, n)
        ang = rng.uniform(0, np.pi, n)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float) / 2
        dx = corners[None, :, 0] * w[:, None]
        dy = corners[None, :, 1] * h[:, None]
        xs = cx[:, None] + dx * np.cos(ang)[:, None] - dy * np.sin(ang)[:, None]
        ys = cy[:, None] + dx * np.sin(ang)[:, None] + dy * np.cos(ang)[:, None]
        geoms = shapely.polygons(np.stack([xs, ys], -1))
        # Addresses: each road runs along a row of cells within a street; compounds of 1–6 buildings per 号.
        road_ix = lay.row[cells] * self.scale.streets[0] + lay.col[cells] // (self.scale.communities[0] * self.scale.grids[0])
        order = np.lexsort((cx, road_ix))
        road_sorted = road_ix[order]
        numbers = np.zeros(n, dtype=int)
        blds = np.zeros(n, dtype=int)
        start = 0
        while start < n:
            end = start
            while end < n and road_sorted[end] == road_sorted[start]:
                end += 1
            k = end - start
            sizes = rng.integers(1, 7, k)
            comp = np.repeat(np.arange(k), sizes)[:k]
            numbers[order[start:end]] = comp * 2 + 1  # odd numbers on this side of the road
            blds[order[start:end]] = np.concatenate([np.arange(1, s + 1) for s in sizes])[:k]
            start = end
        road_names = np.array([f"{ROAD_NAMES[i % len(ROAD_NAMES)]}{ROAD_SUFFIX[(i // len(ROAD_NAMES)) % len(ROAD_SUFFIX)]}"
                               for i in range(road_ix.max() + 1)])
        addr = [f"{road_names[r]}{no}号{b}栋" for r, no, b in zip(road_ix, numbers, blds)]
        # Every third compound (one 号 of a road) is an estate: its buildings are named "翠湖花园3栋" too.
        _, comp = np.unique(road_ix * 1_000_000 + numbers, return_inverse=True)
        estates = np.array([_estate_name(k // 3) if k % 3 == 0 else "" for k in range(comp.max() + 1)], dtype=object)
        names = [f"{estates[c]}{b}栋" if estates[c] else "" for c, b in zip(comp, blds)]
        uses = rng.choice(["住宅", "住宅", "住宅", "住宅", "商住", "商业", "办公", "工业", "公共"], n)
        df = pd.DataFrame({
            "bldg_id": [f"B{i:07d}" for i in range(1, n + 1)],
            "addr": addr,
            "name": names,
            "floors": rng.integers(2, 34, n),
            "use": uses,
            "fire": rng.choice(["有", "无"], n, p=[0.85, 0.15]),
            "rented": rng.choice(["是", "否"], n, p=[0.3, 0.7]),
            "year": rng.integers(1980, 2025, n),
            "geometry": geoms,
        })
        self.bld = df.copy()
        self.bld["cell"], self.bld["cx"], self.bld["cy"] = cells, cx, cy
        self.bld["road"] = road_names[road_ix]
        self.bld["no"], self.bld["b"] = numbers, blds
        self.bld["estate"] = estates[comp]
        self.bld["door"] = [f"{no}号" for no in numbers]
        # Dirt.
        bad = _pick(rng, n, max(0.004, 3 / n))
        bow, sliver, null = np.array_split(bad, 3)
        for i in bow:  # swap two corners: a bow-tie that make_valid splits into two triangles
            c = shapely.get_coordinates(df.at[i, "geometry"])
            df.at[i, "geometry"] = shapely.Polygon([c[0], c[2], c[1], c[3], c[0]])
        for i in sliver:  # all corners on one line: nothing polygonal survives repair
            c = shapely.get_coordinates(df.at[i, "geometry"])
            df.at[i, "geometry"] = shapely.Polygon([c[0], (c[0] + c[2]) / 2, c[2], c[0]])
        df.loc[null, "geometry"] = None
        self.planted.add("buildings", "repaired:geometry", len(bow))
        self.planted.add("buildings", "geometry-invalid", len(sliver))
        self.planted.add("buildings", "geometry-missing", len(null))
        unknown = _pick(rng, n, 0.002, exclude=bad)
        df.loc[unknown, "use"] = "仓储类"
        self.planted.add("buildings", "unknown-category", len(unknown))
        self.bad_buildings = np.concatenate([bad, unknown])
        dups = df.iloc[_pick(rng, n, 0.002, exclude=self.bad_buildings)].copy()
        dups["floors"] = dups["floors"] + 1
        self.planted.add("buildings", "duplicate-id", len(dups))
        ox, oy = lay.outside_point(rng, 2)
        outside = pd.DataFrame({"bldg_id": ["B9000001", "B9000002"], "addr": ["邻区大道1号1栋", "邻区大道3号1栋"],
                                "floors": [5, 6], "use": ["住宅", "住宅"], "fire": ["有", "有"], "rented": ["否", "否"],
                                "year": [2001, 2002], "geometry": list(shapely.buffer(shapely.points(ox, oy), 0.0001))})
        self.planted.add("buildings", "outside-district", 2)
        zhi = self._zhi_buildings(np.setdiff1d(np.flatnonzero(blds == 1), self.bad_buildings))
        df = pd.concat([df, dups, outside, zhi.drop(columns=["cell", "cx", "cy", "road", "no", "b", "estate", "door"])],
                       ignore_index=True)
        self.bld = pd.concat([self.bld, zhi], ignore_index=True)
        gdf = gpd.GeoDataFrame(df, geometry="geometry", crs="EPSG:4326")
        path = self.out / "buildings.geojson"
        path.unlink(missing_ok=True)
        gdf.to_file(path, driver="GeoJSON", engine="pyogrio", layer_options={"COORDINATE_PRECISION": 7})

    def _address_traps(self, df, road, no, b, u, r, taken) -> np.ndarray:
        """Addresses one digit or one character away from a real building, that must match nothing.

        '12号之一' where only 12号 stands; '13栋' where only 3栋 stands (no compound has 13); the same number on
        a road one character off ('明湖街' beside '明湖路', where no 明湖街 exists). Returns the rows changed.
        """
        arng = np.random.default_rng(SEED + 3)
        n = len(df)
        zhi_doors = set(zip(self.bld.loc[self.bld["b"] == 0, "road"], self.bld.loc[self.bld["b"] == 0, "no"]))
        roads = set(self.bld["road"])
        pool = np.setdiff1d(np.flatnonzero(b > 0), taken)
        picks = np.sort(arng.choice(pool, size=min(len(pool), max(3, n // 300)), replace=False))
        changed = []
        for k, i in enumerate(picks):
            kind = k % 3
            if kind == 0 and (road[i], no[i]) not in zhi_doors:
                df.at[i, "address"] = f"{road[i]}{no[i]}号之一{u[i]}单元{r[i]}室"
            elif kind == 1:
                df.at[i, "address"] = f"{road[i]}{no[i]}号{b[i] + 10}栋{u[i]}单元{r[i]}室"
            elif kind == 2:
                other = next((road[i][:-1] + s for s in ("街", "巷", "道") if road[i][:-1] + s not in roads), None)
                if other is None or road[i].endswith(("大道", "一路", "二路", "三路")):
                    continue
                df.at[i, "address"] = f"{other}{no[i]}号{b[i]}栋{u[i]}单元{r[i]}室"
            else:
                continue
            changed.append(i)
        return np.array(changed, dtype=int)

    def _zhi_buildings(self, firsts: np.ndarray) -> pd.DataFrame:
        """A few '12号之一' buildings beside '12号1栋': their own door, never 12号's (drawn from their own stream)."""
        arng = np.random.default_rng(SEED + 1)
        picks = np.sort(arng.choice(firsts, size=max(2, len(firsts) // 100), replace=False))
        z = self.bld.iloc[picks].copy()
        z["bldg_id"] = [f"B8{i:06d}" for i in range(1, len(z) + 1)]
        z["addr"] = [f"{r}{no}号之一" for r, no in zip(z["road"], z["no"])]
        z["name"], z["estate"], z["b"], z["use"] = "", "", 0, "住宅"
        z["door"] = [f"{no}号之一" for no in z["no"]]
        z["geometry"] = shapely.transform(z["geometry"].to_numpy(), lambda c: c + [0.0004, 0.0])
        return z.reset_index(drop=True)

    # -- people -------------------------------------------------------------------------------------------
    def people(self) -> None:
        """Registers: UTF-8 CSV (most streets), GBK CSV with Chinese headers (street 1), Excel (one community)."""
        rng, sc = self.rng, self.scale
        good = np.setdiff1d(np.arange(len(self.bld)), self.bad_buildings)
        res = good[np.isin(self.bld["use"].to_numpy()[good], ["住宅", "商住"])]
        nh = sc.households
        hb = rng.choice(res, nh)
        size = rng.choice([1, 2, 3, 4, 5], nh, p=[0.18, 0.3, 0.27, 0.17, 0.08])
        floors = self.bld["floors"].to_numpy()[hb]
        unit = rng.integers(1, 4, nh)
        room = rng.integers(1, np.maximum(floors, 2) + 1) * 100 + rng.integers(1, 5, nh)
        pb = np.repeat(hb, size)
        n = len(pb)
        hh = np.repeat(np.arange(1, nh + 1), size)
        age = np.clip(rng.gamma(4.5, 9.0, n), 0, 99).astype(int)
        birth = pd.Series(self.t0 - pd.to_timedelta(age * 365.25 + rng.integers(0, 365, n), unit="D")).dt.normalize()
        male = rng.random(n) < 0.51
        floating = rng.random(n) < 0.35
        groups = np.full(n, "", dtype=object)
        special = rng.random(n)
        groups[(age >= 70) & (special < 0.15)] = "独居老人"
        groups[special > 0.985] = "残疾人"
        groups[(special > 0.97) & (special <= 0.985)] = "低保户"
        groups[(special > 0.965) & (special <= 0.97)] = "残疾人;低保户"
        groups[(age.astype(int) < 16) & (special < 0.03)] = "留守儿童"
        bld = self.bld
        road, no, b = bld["road"].to_numpy()[pb], bld["no"].to_numpy()[pb], bld["b"].to_numpy()[pb]
        u, r = np.repeat(unit, size), np.repeat(room, size)
        street = self.layout.street_code[bld["cell"].to_numpy()[pb]]
        form = rng.integers(0, 6, n)
        prefix = "广东省广州市明湖区"
        # The richer forms (drawn from their own stream, so the rest of the sample stays as it was): an estate's
        # residents often write the estate, not the road; floors are written too; 之一 buildings have no 栋.
        arng = np.random.default_rng(SEED + 2)
        rich = arng.random(n)
        estate, door = bld["estate"].to_numpy()[pb], bld["door"].to_numpy()[pb]
        addr = []
        for f, ro, nn, bb, uu, rr, es, dr, x in zip(form, road, no, b, u, r, estate, door, rich):
            if bb == 0:
                addr.append(f"{ro}{dr}{uu}单元{rr}室")
            elif es and x < 0.25:
                addr.append(f"{es}{bb}栋{uu}单元{rr}")
            elif es and x < 0.4:
                addr.append(f"{ro}{nn}号{es}{bb}栋{rr // 100}楼{rr}")
            elif f == 0:
                addr.append(f"{ro}{nn}号{bb}栋{uu}单元{rr}室")
            elif f == 1:
                addr.append(f"{prefix}{ro}{nn}号{bb}幢{uu}单元{rr}")
            elif f == 2:
                addr.append(f"{ro}{nn}号{bb}栋{uu}-{rr}")
            elif f == 3:
                addr.append(f"{ro} {nn} 号 {bb} 座 {uu} 单元 {rr} 房")
            elif f == 4:
                addr.append(f"{ro}{nn}号{bb}号楼{uu}单元{rr}室".translate(FULLWIDTH))
            else:
                addr.append(f"明湖区{ro}{nn}号{bb}栋{uu}单元{rr}室")
        addr = np.array(addr, dtype=object)
        birth_s = birth.dt.strftime("%Y-%m-%d").to_numpy().astype(object)
        df = pd.DataFrame({
            "person_id": [f"P{i:08d}" for i in range(1, n + 1)],
            "name": _names(rng, n),
            "id_number": _id_numbers(rng, birth, male),
            "phone": _phones(rng, n),
            "gender": np.where(male, "男", "女"),
            "birth_date": birth_s,
            "origin": np.where(floating, rng.choice(PROVINCES[1:], n), "广东"),
            "residence": np.where(floating, "流动人口", "户籍人口"),
            "household_id": [f"H{h:07d}" for h in hh],
            "address": addr,
            "special_groups": groups,
        })
        self.people_df = df.assign(building=pb, street=street)
        # Dirt, spread over all three files.
        unmatched = _pick(rng, n, 0.004)
        df.loc[unmatched, "address"] = [f"{ro}{nn + 900}号{bb}栋" for ro, nn, bb in
                                        zip(road[unmatched], no[unmatched], b[unmatched])]
        taken = unmatched
        missing = _pick(rng, n, 0.001, exclude=taken)
        df.loc[missing, "address"] = ""
        taken = np.concatenate([taken, missing])
        unknown = _pick(rng, n, 0.001, exclude=taken)
        df.loc[unknown, "residence"] = "其他"
        taken = np.concatenate([taken, unknown])
        badgroup = _pick(rng, n, 0.0005, exclude=taken)
        df.loc[badgroup, "special_groups"] = "重点关注"
        taken = np.concatenate([taken, badgroup])
        dups = _pick(rng, n, 0.001, exclude=taken)
        traps = self._address_traps(df, road, no, b, u, r, np.concatenate([taken, dups]))
        truth = np.where(np.isin(np.arange(n), np.concatenate([unmatched, missing, traps])), "",
                         bld["bldg_id"].to_numpy()[pb])
        self.people_truth = truth
        self.people_dirty = df
        street_first = min(self.layout.street_code)
        excel_comm = min(self.layout.community_code[self.layout.street_ix == 1])
        comm = self.layout.community_code[bld["cell"].to_numpy()[pb]]
        to_gbk = street == street_first
        to_xlsx = (comm == excel_comm) & ~to_gbk
        parts = {"people_register": ~to_gbk & ~to_xlsx, "people_gbk": to_gbk, "people_excel": to_xlsx}
        for name, mask in parts.items():
            for reason, idx in (("address-unmatched", unmatched), ("address-unmatched", traps),
                                ("address-missing", missing),
                                ("unknown-category", unknown), ("unknown-category", badgroup),
                                ("duplicate-id", dups)):
                self.planted.add(name, reason, int(mask[idx].sum()))
        dup_rows = df.iloc[dups].copy()
        dup_rows["phone"] = _phones(rng, len(dup_rows))
        full = pd.concat([df, dup_rows], ignore_index=True)
        masks = {k: np.concatenate([v, v[dups]]) for k, v in parts.items()}
        (self.out / "people").mkdir(exist_ok=True)
        # Which building each person lives in (empty: none fits the address written): false matches are counted on it.
        pd.DataFrame({"person_id": full["person_id"], "building": np.concatenate([truth, truth[dups]])}).drop_duplicates(
            "person_id").to_csv(self.out / "address_truth.csv", index=False)
        full[masks["people_register"]].to_csv(self.out / "people" / "register.csv", index=False, encoding="utf-8")
        cn = {"person_id": "人员编号", "name": "姓名", "id_number": "公民身份号码", "phone": "联系电话", "gender": "性别",
              "birth_date": "出生日期", "origin": "籍贯", "residence": "人口类型", "household_id": "户编号",
              "address": "现住址", "special_groups": "特殊人群"}
        full[masks["people_gbk"]].rename(columns=cn).to_csv(self.out / "people" / "register_gbk.csv", index=False,
                                                               encoding="gbk")
        _write_xlsx(full[masks["people_excel"]].rename(columns=cn), self.out / "people" / "community_register.xlsx",
                    sheet="人口信息")

    # -- organisations ------------------------------------------------------------------------------------
    def organisations(self) -> None:
        """enterprises.csv in GCJ-02 lon/lat, and party_orgs.csv placed by address."""
        rng, lay, n = self.rng, self.layout, self.scale.enterprises
        cells = rng.integers(0, len(lay.cells), n)
        x, y = lay.points_in_cells(rng, cells)
        gx, gy = wgs84_to_gcj02(x, y)
        kinds = rng.choice(["企业"] * 18 + ["学校", "长者食堂"], n)
        industry = np.where(kinds == "企业", rng.choice(["制造业", "批发零售", "餐饮业", "软件和信息技术服务业", "建筑业",
                                                          "交通运输", "其他"], n), np.where(kinds == "学校", "教育", "餐饮业"))
        df = pd.DataFrame({
            "统一社会信用代码": [f"91440199MA{i:08d}" for i in range(1, n + 1)],
            "企业名称": [f"明湖{COMMUNITY_NAMES[i % 20]}{['科技', '商贸', '餐饮', '建设', '物流'][i % 5]}有限公司{i}" for i in range(n)],
            "类型": kinds, "行业": industry,
            "从业人数": rng.integers(1, 800, n).astype(str),
            "经营状态": rng.choice(["在营", "在营", "在营", "存续", "注销", "吊销"], n),
            "联系人": _names(rng, n), "联系电话": _phones(rng, n),
            "经度": np.round(gx, 7).astype(str), "纬度": np.round(gy, 7).astype(str),
        })
        swapped = _pick(rng, n, 0.005)
        df.loc[swapped, ["经度", "纬度"]] = df.loc[swapped, ["纬度", "经度"]].to_numpy()
        missing = _pick(rng, n, 0.005, exclude=swapped)
        df.loc[missing, "经度"] = ""
        ox, oy = wgs84_to_gcj02(*lay.outside_point(rng, 3))
        outside = _pick(rng, n, 3 / n, exclude=np.concatenate([swapped, missing]))[:3]
        df.loc[outside, "经度"] = np.round(ox[: len(outside)], 7).astype(str)
        df.loc[outside, "纬度"] = np.round(oy[: len(outside)], 7).astype(str)
        taken = np.concatenate([swapped, missing, outside])
        unknown = _pick(rng, n, 0.003, exclude=taken)
        df.loc[unknown, "行业"] = "未知行业"
        dups = df.iloc[_pick(rng, n, 0.002, exclude=np.concatenate([taken, unknown]))]
        for reason, k in (("coordinates-swapped", len(swapped)), ("coordinates-missing", len(missing)),
                          ("outside-district", len(outside)), ("unknown-category", len(unknown)),
                          ("duplicate-id", len(dups))):
            self.planted.add("enterprises", reason, k)
        pd.concat([df, dups], ignore_index=True).to_csv(self.out / "enterprises.csv", index=False, encoding="utf-8")

        # Party organisations and service centres, one of each per community, at a building's address.
        comms = sorted(set(lay.community_code))
        bld = self.bld.drop(index=self.bad_buildings)
        rows = []
        for i, comm in enumerate(comms):
            cand = bld[lay.community_code[bld["cell"].to_numpy()] == comm]
            picks = cand.sample(n=min(3, len(cand)), random_state=i)
            names = [f"{comm[-6:]}社区党委", f"{comm[-6:]}社区党群服务中心", f"{comm[-6:]}第一党支部"]
            kinds = ["党委", "党群服务中心", "党支部"]
            for j, (_, b) in enumerate(picks.iterrows()):
                rows.append({"组织编号": f"DZZ{i + 1:04d}{j + 1}", "组织名称": names[j], "组织类别": kinds[j],
                             "党员数": int(rng.integers(8, 120)), "地址": b["addr"],
                             "联系电话": _phones(rng, 1)[0]})
        party = pd.DataFrame(rows)
        party.loc[len(party)] = {"组织编号": "DZZ9999", "组织名称": "外区临时党支部", "组织类别": "党支部", "党员数": 5,
                                 "地址": "未知路88号", "联系电话": ""}
        self.planted.add("party_orgs", "address-unmatched", 1)
        party.to_csv(self.out / "party_orgs.csv", index=False, encoding="utf-8-sig")
        self.party_orgs = party.iloc[:-1]

    def party_members(self) -> None:
        """party_members.csv (UTF-8 with BOM, as Excel exports it): members linked to households."""
        rng = self.rng
        p = self.people_df
        adults = p[(pd.to_datetime(p["birth_date"]) < self.t0 - timedelta(days=18 * 365))]
        m = adults.sample(frac=0.05, random_state=SEED).sort_index()
        dirty_addr = self.people_dirty.loc[m.index, "address"]
        orgs = self.party_orgs["组织编号"].to_numpy()
        # 点对点联系: each member looks after 2–3 households of their own grid, usually in other buildings.
        cell_of = self.bld["cell"].to_numpy()
        hh_by_cell = p.groupby(cell_of[p["building"].to_numpy()])["household_id"].unique()
        links = []
        for bld_ix in m["building"]:
            hs = hh_by_cell.get(cell_of[bld_ix], np.array([]))
            k = min(len(hs), int(rng.integers(2, 4)))
            links.append(";".join(rng.choice(hs, k, replace=False)) if k else "")
        df = pd.DataFrame({"党员编号": [f"DY{i:06d}" for i in range(1, len(m) + 1)], "姓名": m["name"].to_numpy(),
                           "身份证号": m["id_number"].to_numpy(), "所在党组织": rng.choice(orgs, len(m)),
                           "联系户": links, "居住地址": dirty_addr.to_numpy()})
        self.planted.add("party_members", "address-unmatched",
                         int(((df["居住地址"] != "").to_numpy() & (self.people_truth[m.index] == "")).sum()))
        self.planted.add("party_members", "address-missing", int((df["居住地址"] == "").sum()))
        df.to_csv(self.out / "party_members.csv", index=False, encoding="utf-8-sig")

    # -- events -------------------------------------------------------------------------------------------
    def events(self) -> None:
        """events.csv: BD-09 lon/lat, mixed date formats, Chinese and English categories."""
        rng, lay, n = self.rng, self.layout, self.scale.events
        cells = rng.integers(0, len(lay.cells), n)
        x, y = lay.points_in_cells(rng, cells)
        bx, by = wgs84_to_bd09(x, y)
        cls = rng.choice(list(EVENT_TYPES), n, p=[0.3, 0.15, 0.4, 0.15])
        typ = [EVENT_TYPES[c][k % len(EVENT_TYPES[c])] for c, k in zip(cls, rng.integers(0, 5, n))]
        reported = pd.Series(self.t0 - pd.to_timedelta(rng.uniform(0, 180 * 86400, n), unit="s")).dt.floor("min")
        stage = rng.choice(4, n, p=[0.05, 0.1, 0.15, 0.7])
        resp = pd.to_timedelta(rng.gamma(1.5, 50, n), unit="min")
        close = pd.to_timedelta(rng.gamma(1.8, 9, n), unit="h")
        dispatched = reported + resp
        resolved = dispatched + close
        closed = resolved + pd.to_timedelta(rng.uniform(1, 48, n), unit="h")
        status_cn = np.array(["上报", "已派遣", "已办结", "已结案"])[stage]
        english = rng.random(n) < 0.1
        status = np.where(english, np.array(["reported", "dispatched", "resolved", "closed"])[stage], status_cn)
        cls_out = np.where(english, pd.Series(cls).map({"服务诉求": "service", "矛盾纠纷": "dispute", "城市管理": "city",
                                                         "安全隐患": "hazard"}).to_numpy(), cls)
        df = pd.DataFrame({
            "事件编号": [f"E{i:08d}" for i in range(1, n + 1)],
            "大类": cls_out, "小类": typ, "状态": status,
            "上报时间": _fmt_dates(rng, reported),
            "派遣时间": _fmt_dates(rng, dispatched.where(stage >= 1)),
            "办结时间": _fmt_dates(rng, resolved.where(stage >= 2)),
            "结案时间": _fmt_dates(rng, closed.where(stage >= 3)),
            "来源": rng.choice(["网格员", "12345热线", "随手拍", "物联感知"], n, p=[0.5, 0.3, 0.15, 0.05]),
            "描述": [f"{t}（{c}）" for t, c in zip(typ, lay.grid_code[cells])],
            "上报人电话": _phones(rng, n),
            "lng_bd": np.round(bx, 7).astype(str), "lat_bd": np.round(by, 7).astype(str),
        })
        k = max(1, n // 400)
        bad = rng.choice(n, 6 * k, replace=False)
        sw, miss, outs, baddate, unk, dup = np.split(bad, 6)
        df.loc[sw, ["lng_bd", "lat_bd"]] = df.loc[sw, ["lat_bd", "lng_bd"]].to_numpy()
        df.loc[miss, ["lng_bd", "lat_bd"]] = ""
        ox, oy = wgs84_to_bd09(*lay.outside_point(rng, len(outs)))
        df.loc[outs, "lng_bd"], df.loc[outs, "lat_bd"] = np.round(ox, 7).astype(str), np.round(oy, 7).astype(str)
        df.loc[baddate, "上报时间"] = rng.choice(["2026-13-45 25:61", "去年八月", "0000-00-00"], len(baddate))
        df.loc[unk, "大类"] = "其它类"
        for reason, idx in (("coordinates-swapped", sw), ("coordinates-missing", miss), ("outside-district", outs),
                            ("date-invalid", baddate), ("unknown-category", unk), ("duplicate-id", dup)):
            self.planted.add("events", reason, len(idx))
        dups = df.iloc[np.sort(dup)].copy()
        dups["状态"] = "已结案"
        pd.concat([df, dups], ignore_index=True).to_csv(self.out / "events.csv", index=False, encoding="utf-8")

    # -- devices ------------------------------------------------------------------------------------------
    def devices(self) -> None:
        """devices.csv with x/y in CGCS2000 / 3-degree Gauss-Krüger CM 114E (EPSG:4547), and readings."""
        from pyproj import Transformer

        rng, lay, n = self.rng, self.layout, self.scale.devices
        cells = rng.integers(0, len(lay.cells), n)
        lon, lat = lay.points_in_cells(rng, cells)
        x, y = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True).transform(lon, lat)
        kind = rng.choice(["视频监控"] * 8 + ["空气监测站", "水质监测站"], n)
        df = pd.DataFrame({
            "device_code": [f"D{i:06d}" for i in range(1, n + 1)],
            "name": [f"{k}{i:04d}" for i, k in enumerate(kind, 1)],
            "kind": kind,
            "status": rng.choice(["正常", "正常", "正常", "正常", "离线", "告警"], n),
            "installed": pd.Series(self.t0 - pd.to_timedelta(rng.integers(30, 3000, n), unit="D")).dt.strftime("%Y-%m-%d"),
            "X": np.round(x, 2).astype(str), "Y": np.round(y, 2).astype(str),
        })
        miss = _pick(rng, n, 0.01)
        df.loc[miss, "X"] = ""
        unk = _pick(rng, n, 0.005, exclude=miss)
        df.loc[unk, "kind"] = "无人机"
        self.planted.add("devices", "coordinates-missing", len(miss))
        self.planted.add("devices", "unknown-category", len(unk))
        df.to_csv(self.out / "devices.csv", index=False, encoding="utf-8")

        stations = df[df["kind"].isin(["空气监测站", "水质监测站"])]
        per = self.scale.readings_per_station
        dev = np.repeat(stations["device_code"].to_numpy(), per)
        knd = np.repeat(stations["kind"].to_numpy(), per)
        ts = np.tile(pd.date_range(self.t0 - timedelta(hours=per), periods=per, freq="h").strftime("%Y-%m-%d %H:%M"),
                     len(stations))
        metric = np.where(knd == "空气监测站", "pm25", "cod")
        value = np.where(knd == "空气监测站", rng.gamma(3, 15, len(dev)), rng.gamma(4, 6, len(dev)))
        limit = np.where(knd == "空气监测站", 75.0, 40.0)
        rd = pd.DataFrame({"device_code": dev, "time": ts, "metric": metric, "value": np.round(value, 1).astype(str),
                           "unit": np.where(knd == "空气监测站", "µg/m³", "mg/L"),
                           "alarm": np.where(value > limit, "是", "否")})
        if len(rd):
            badv = _pick(rng, len(rd), 0.005)
            rd.loc[badv, "value"] = "--"
            self.planted.add("device_readings", "value-invalid", len(badv))
            # Readings of stations that were themselves rejected point at no loaded device.
            rejected = df["device_code"].to_numpy()[np.concatenate([miss, unk])]
            orphaned = rd["device_code"].isin(rejected).to_numpy().copy()
            orphaned[badv] = False  # value-invalid is checked first
            self.planted.add("device_readings", "reference-unknown", int(orphaned.sum()))
        orphan = pd.DataFrame({"device_code": ["D999999"] * 3,
                               "time": ["2026-09-30 10:00", "2026-09-30 11:00", "2026-09-30 12:00"], "metric": ["pm25"] * 3,
                               "value": ["12.0", "13.0", "14.0"], "unit": ["µg/m³"] * 3, "alarm": ["否"] * 3})
        self.planted.add("device_readings", "reference-unknown", 3)
        pd.concat([rd, orphan], ignore_index=True).to_csv(self.out / "device_readings.csv", index=False)

    # -- rasters ------------------------------------------------------------------------------------------
    def rasters(self) -> None:
        """rainfall_forecast.tif (6 hourly bands, mm) and dem.tif (metres) over the district."""
        import rasterio
        from rasterio.transform import from_origin

        rng, lay = self.rng, self.layout
        res = 0.0005
        west, north = LON0 - 2 * CELL_DX, LAT0 + (lay.ny + 2) * CELL_DY
        w = int(round((lay.nx + 4) * CELL_DX / res))
        h = int(round((lay.ny + 4) * CELL_DY / res))
        transform = from_origin(west, north, res, res)
        yy, xx = np.mgrid[0:h, 0:w]
        (self.out / "rasters").mkdir(exist_ok=True)
        dem = (8 + 25 * np.sin(xx / w * 3) * np.cos(yy / h * 2) + 20 * (yy / h) + rng.normal(0, 0.5, (h, w))).astype("float32")
        profile = dict(driver="GTiff", width=w, height=h, crs="EPSG:4326", transform=transform, compress="deflate",
                       nodata=-9999.0)
        with rasterio.open(self.out / "rasters" / "dem.tif", "w", count=1, dtype="float32", **profile) as dst:
            dst.write(dem, 1)
            dst.update_tags(units="m", description="digital elevation model (synthetic)")
        cx, cy = w * 0.4, h * 0.6
        with rasterio.open(self.out / "rasters" / "rainfall_forecast.tif", "w", count=6, dtype="float32", **profile) as dst:
            for band in range(6):
                d2 = ((xx - cx - band * w * 0.05) ** 2 + (yy - cy) ** 2) / (0.3 * w) ** 2
                dst.write((40 * np.exp(-d2) * (1 + band / 3)).astype("float32"), band + 1)
                dst.set_band_description(band + 1, f"+{band + 1}h")
            dst.update_tags(units="mm/h", issued=self.t0.isoformat(), description="hourly rainfall forecast (synthetic)")

    # -- roads and water ----------------------------------------------------------------------------------
    def roads_and_water(self) -> None:
        """roads.geojson: the street network as a surveying bureau delivers it, segments split at grid edges;
        water.gpkg (EPSG:4490): a river's reaches (河段, polygons), a 河涌 (lines) and the river chief's patrol
        routes (巡河路线), each split at grid edges as the river-chief system assigns reaches."""
        import geopandas as gpd
        import pyogrio

        rng = np.random.default_rng(SEED + 14)  # a stream of its own: the other files stay as they were
        lay, sc = self.layout, self.scale
        per_street = sc.communities[0] * sc.grids[0]

        def at(r, c, u, v):
            bottom = lay.vx[r, c] * (1 - u) + lay.vx[r, c + 1] * u, lay.vy[r, c] * (1 - u) + lay.vy[r, c + 1] * u
            top = (lay.vx[r + 1, c] * (1 - u) + lay.vx[r + 1, c + 1] * u,
                   lay.vy[r + 1, c] * (1 - u) + lay.vy[r + 1, c + 1] * u)
            return bottom[0] * (1 - v) + top[0] * v, bottom[1] * (1 - v) + top[1] * v

        def road_name(i: int) -> str:  # the names the buildings' addresses use
            return f"{ROAD_NAMES[i % len(ROAD_NAMES)]}{ROAD_SUFFIX[(i // len(ROAD_NAMES)) % len(ROAD_SUFFIX)]}"

        rows = []
        for k, (r, c) in enumerate(zip(lay.row, lay.col)):
            # the road the row's addresses are on, through the middle of the cell (a vertex in the cell itself,
            # so that the segment is placed in its grid)
            rows.append({"road_id": f"R{k + 1:05d}", "name": road_name(r * sc.streets[0] + c // per_street),
                         "class": "主干路" if r % sc.grids[1] == 0 else "支路",
                         "geometry": shapely.LineString([at(r, c, 0, 0.5), at(r, c, 0.5, 0.52), at(r, c, 1, 0.5)])})
            if c % 2 == 0:  # cross streets every other column
                rows.append({"road_id": f"R{k + 1:05d}N", "name": f"{CROSS_NAMES[(c // 2) % len(CROSS_NAMES)]}巷"
                             if c % per_street else f"{CROSS_NAMES[(c // 2) % len(CROSS_NAMES)]}大街",
                             "class": "次干路" if c % per_street == 0 else "街巷",
                             "geometry": shapely.LineString([at(r, c, 0.35, 0), at(r, c, 0.37, 0.5),
                                                             at(r, c, 0.35, 1)])})
        roads = pd.DataFrame(rows)
        roads.loc[len(roads)] = {"road_id": "R99999", "name": "未测绘道路", "class": "支路", "geometry": None}
        self.planted.add("roads", "geometry-missing", 1)
        path = self.out / "roads.geojson"
        path.unlink(missing_ok=True)
        gpd.GeoDataFrame(roads, geometry="geometry", crs="EPSG:4326").to_file(path, driver="GeoJSON", engine="pyogrio")

        # a river across the district, west to east, meandering; a 河涌 north to south; a patrol path on the bank
        x0, x1 = LON0 - 0.002, LON0 + lay.nx * CELL_DX + 0.002
        xs = np.linspace(x0, x1, 60 * lay.nx)
        mid = LAT0 + lay.ny * CELL_DY * rng.uniform(0.35, 0.65)
        wave = rng.uniform(0, 2 * np.pi)
        ys = mid + CELL_DY * 0.8 * np.sin(np.linspace(0, 1.5 * np.pi * max(1, lay.nx / 6), len(xs)) + wave)
        centre = shapely.LineString(np.column_stack([xs, ys]))
        river = centre.buffer(0.00028, cap_style="flat")
        patrol = shapely.LineString(np.column_stack([xs, ys + 0.0007]))
        cx0 = LON0 + CELL_DX * lay.nx * rng.uniform(0.3, 0.7)
        cys = np.linspace(LAT0 - 0.002, LAT0 + lay.ny * CELL_DY + 0.002, 40 * lay.ny)
        creek = shapely.LineString(np.column_stack([cx0 + CELL_DX * 0.3 * np.sin(np.linspace(0, 3 * np.pi, len(cys))),
                                                    cys]))
        water = []
        for shape, name, kind in ((river, "明湖河", "河流"), (creek, "东风涌", "河涌"), (patrol, "明湖河巡河路线", "巡河路线")):
            pieces = shapely.intersection(lay.cells, shape)
            for k in np.flatnonzero(~shapely.is_empty(pieces)):
                piece = pieces[k]
                if piece.geom_type not in ("LineString", "MultiLineString", "Polygon", "MultiPolygon"):
                    piece = shapely.union_all([p for p in shapely.get_parts(piece)
                                               if p.geom_type in ("LineString", "Polygon")])
                water.append({"water_id": f"W{len(water) + 1:05d}", "名称": name, "类型": kind,
                              "河段": f"{name}{lay.grid_code[k][-6:]}段" if kind != "巡河路线" else None,
                              "geometry": piece})
        water.append({"water_id": "W99999", "名称": "规划水库", "类型": "水库", "河段": None,
                      "geometry": shapely.box(LON0 + 0.001, LAT0 + 0.001, LON0 + 0.0015, LAT0 + 0.0015)})
        self.planted.add("water", "unknown-category", 1)
        path = self.out / "water.gpkg"
        path.unlink(missing_ok=True)
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2026-01-01T00:00:00Z"})
        gpd.GeoDataFrame(pd.DataFrame(water), geometry="geometry", crs="EPSG:4490").to_file(
            path, layer="water", driver="GPKG", engine="pyogrio")

    # -- manifest -----------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        """The manifest that maps every delivered file onto the canonical model."""
        cn = {"name": "姓名", "id_number": "公民身份号码", "phone": "联系电话", "gender": "性别", "birth_date": "出生日期",
              "origin": "籍贯", "residence": "人口类型", "household_id": "户编号", "address": "现住址",
              "special_groups": "特殊人群"}
        people_cols = {k: k for k in cn}
        admin = [{"name": f"units_{lv}", "path": "admin_units.gpkg", "layer": lv, "level": lv, "id": "code",
                  "columns": {"name": "name", "parent_code": "parent"}} for lv in ("district", "street", "community", "grid")]
        sources = [
            {"name": "buildings", "entity": "buildings", "path": "buildings.geojson", "id": "bldg_id",
             "columns": {"address": "addr", "name": "name", "floors": "floors", "use": "use", "fire_facilities": "fire",
                         "rented": "rented", "year_built": "year"},
             "place": {"geometry": True}},
            {"name": "people_register", "entity": "people", "path": "people/register.csv", "encoding": "utf-8",
             "id": "person_id", "columns": people_cols, "place": {"address": "address"}},
            {"name": "people_gbk", "entity": "people", "path": "people/register_gbk.csv", "encoding": "gbk",
             "id": "人员编号", "columns": cn, "place": {"address": "现住址"}},
            {"name": "people_excel", "entity": "people", "path": "people/community_register.xlsx", "layer": "人口信息",
             "id": "人员编号", "columns": cn, "place": {"address": "现住址"}},
            {"name": "enterprises", "entity": "organisations", "path": "enterprises.csv", "id": "统一社会信用代码",
             "columns": {"name": "企业名称", "kind": "类型", "industry": "行业", "size": "从业人数", "active": "经营状态",
                         "contact": "联系人", "phone": "联系电话"},
             "place": {"x": "经度", "y": "纬度", "crs": "gcj02"}},
            {"name": "party_orgs", "entity": "organisations", "path": "party_orgs.csv", "encoding": "utf-8-sig",
             "id": "组织编号", "columns": {"name": "组织名称", "kind": "组织类别", "size": "党员数", "address": "地址",
                                         "phone": "联系电话"},
             "constants": {"active": "true", "industry": "public"}, "place": {"address": "地址"}},
            {"name": "party_members", "entity": "party_members", "path": "party_members.csv", "encoding": "utf-8-sig",
             "id": "党员编号", "columns": {"name": "姓名", "id_number": "身份证号", "organisation_ref": "所在党组织",
                                          "linked_households": "联系户", "address": "居住地址"},
             "place": {"address": "居住地址"}},
            {"name": "events", "entity": "events", "path": "events.csv", "id": "事件编号",
             "columns": {"class": "大类", "type": "小类", "status": "状态", "reported_at": "上报时间",
                         "dispatched_at": "派遣时间", "resolved_at": "办结时间", "closed_at": "结案时间", "channel": "来源",
                         "description": "描述", "reporter_phone": "上报人电话"},
             "place": {"x": "lng_bd", "y": "lat_bd", "crs": "bd09"}},
            {"name": "devices", "entity": "devices", "path": "devices.csv", "id": "device_code",
             "columns": {"name": "name", "kind": "kind", "status": "status", "installed_at": "installed"},
             "place": {"x": "X", "y": "Y", "crs": 4547}},
            {"name": "device_readings", "entity": "device_readings", "path": "device_readings.csv",
             "id": ["device_code", "time", "metric"],
             "columns": {"device_ref": "device_code", "ts": "time", "metric": "metric", "value": "value", "unit": "unit",
                         "alarm": "alarm"}},
            {"name": "roads", "entity": "roads", "path": "roads.geojson", "id": "road_id",
             "columns": {"name": "name", "class": "class"}, "place": {"geometry": True}},
            {"name": "water", "entity": "waters", "path": "water.gpkg", "layer": "water", "id": "water_id",
             "columns": {"name": "名称", "kind": "类型", "reach": "河段"}, "place": {"geometry": True}},
        ]
        rasters = [{"name": "rainfall_forecast", "kind": "rainfall", "path": "rasters/rainfall_forecast.tif"},
                   {"name": "dem", "kind": "dem", "path": "rasters/dem.tif"}]
        return {"name": f"明湖区 sample ({self.scale_name})", "admin_units": admin, "sources": sources,
                "rasters": rasters}

    def write(self) -> Path:
        """Generate every file and return the manifest's path."""
        self.out.mkdir(parents=True, exist_ok=True)
        steps = [("admin units 行政区划", self.admin_units), ("buildings 房屋", self.buildings),
                 ("people registers 人口", self.people), ("organisations 组织", self.organisations),
                 ("party members 党员", self.party_members), ("events 事件", self.events),
                 ("devices and readings 设备", self.devices), ("rainfall forecast and DEM 栅格", self.rasters),
                 ("roads and water 道路水系", self.roads_and_water)]
        for i, (label, step) in enumerate(steps, 1):
            self.progress(f"[{i}/{len(steps)}] {label}")
            step()
        path = self.out / "manifest.yaml"
        header = ("# brain ingest manifest, written by `brain sample`; see README.md#manifest for the format.\n")
        path.write_text(header + yaml.safe_dump(self.manifest(), allow_unicode=True, sort_keys=False), encoding="utf-8")
        (self.out / "planted.json").write_text(
            json.dumps({"scale": self.scale_name, "planted": self.planted.counts}, ensure_ascii=False, indent=1,
                       sort_keys=True), encoding="utf-8")
        return path


def _estate_name(k: int) -> str:
    """The k-th estate name: 翠湖花园, 锦绣花园, …, then 翠湖小区…, then 翠湖花园二期…"""
    w, sfx = len(ESTATE_WORDS), len(ESTATE_SUFFIX)
    phase = k // (w * sfx)  # 0: no phase; then 二期, 三期 … 十一期 … (Chinese numerals: digits would read as a number)
    return f"{ESTATE_WORDS[k % w]}{ESTATE_SUFFIX[(k // w) % sfx]}{_cn_numeral(phase + 1) + '期' if phase else ''}"


def _cn_numeral(n: int) -> str:
    """1–999 in Chinese numerals (十一, 二十, 一百零五)."""
    digits = "零一二三四五六七八九"
    hundreds, tens, ones = n // 100, n // 10 % 10, n % 10
    out = f"{digits[hundreds]}百" if hundreds else ""
    if tens:
        out += ("" if tens == 1 and not hundreds else digits[tens]) + "十"
    elif hundreds and ones:
        out += "零"
    return out + (digits[ones] if ones else "")


def _write_xlsx(df: pd.DataFrame, path: Path, sheet: str) -> None:
    """An Excel file with fixed document properties, so the sample is byte-for-byte reproducible."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False})
    wb.set_properties({"created": datetime(2026, 1, 1), "author": "明湖区数据局"})
    ws = wb.add_worksheet(sheet)
    ws.write_row(0, 0, list(df.columns))
    for i, row in enumerate(df.itertuples(index=False), start=1):
        ws.write_row(i, 0, ["" if v is None else str(v) for v in row])
    wb.close()


def generate(scale: str, out: str | Path, progress: Callable[[str], None] = lambda s: None) -> Path:
    """Write the sample of `scale` into `out`; returns the manifest path."""
    return SampleWriter(scale, Path(out), progress).write()
