"""The canonical model: one table per entity, declared once; DDL, ingest casts and docs derive from it."""

from __future__ import annotations

from dataclasses import dataclass, field

LEVELS = ("district", "street", "community", "grid")
LEVEL_LABELS = {"district": "区", "street": "街道", "community": "社区", "grid": "网格"}

#: Columns every placed entity row carries after ingest.
PLACEMENT = ("grid_code", "community_code", "street_code", "district_code")

#: Controlled vocabularies: canonical code → labels accepted in source files (matched case-insensitively).
VOCABS: dict[str, dict[str, tuple[str, ...]]] = {
    "residence": {
        "registered": ("户籍", "户籍人口", "常住", "registered", "本地"),
        "floating": ("流动", "流动人口", "外来", "floating", "暂住"),
    },
    "gender": {
        "male": ("男", "m", "male", "1"),
        "female": ("女", "f", "female", "2"),
    },
    "special_group": {
        "elderly_alone": ("独居老人", "elderly_alone"),
        "disabled": ("残疾人", "disabled"),
        "low_income": ("低保", "低保户", "low_income"),
        "community_correction": ("社区矫正", "community_correction"),
        "veteran": ("退役军人", "veteran"),
        "left_behind_child": ("留守儿童", "left_behind_child"),
    },
    "org_kind": {
        "enterprise": ("企业", "enterprise", "公司"),
        "party_org": ("党组织", "党支部", "党委", "party_org"),
        "service_centre": ("党群服务中心", "党群服务站", "service_centre"),
        "school": ("学校", "school"),
        "canteen": ("食堂", "长者食堂", "canteen"),
        "social_org": ("社会组织", "social_org"),
    },
    "industry": {
        "manufacturing": ("制造业", "manufacturing"),
        "retail": ("批发零售", "零售", "retail"),
        "catering": ("餐饮", "餐饮业", "catering"),
        "it": ("信息技术", "软件和信息技术服务业", "it"),
        "construction": ("建筑业", "construction"),
        "logistics": ("物流", "交通运输", "logistics"),
        "education": ("教育", "education"),
        "public": ("公共管理", "public"),
        "other": ("其他", "other"),
    },
    "active": {
        "true": ("在营", "存续", "正常", "是", "true", "1", "y", "yes", "active"),
        "false": ("注销", "吊销", "停业", "否", "false", "0", "n", "no", "inactive"),
    },
    "event_class": {
        "service": ("服务诉求", "民生服务", "service"),
        "dispute": ("矛盾纠纷", "dispute"),
        "city": ("城市管理", "city"),
        "hazard": ("安全隐患", "hazard"),
    },
    # item types under the classes: '<class>.<item>' (a deployment adds its own in a vocabulary file)
    "event_type": {
        "service.licensing": ("证照办理",), "service.social_security": ("社保咨询",),
        "service.elderly_care": ("养老服务",), "service.employment": ("就业帮扶",),
        "dispute.neighbours": ("邻里纠纷",), "dispute.property_management": ("物业纠纷",),
        "dispute.labour": ("劳资纠纷",), "dispute.family": ("婚姻家庭", "家庭纠纷"),
        "city.street_vending": ("占道经营",), "city.dumping": ("乱堆乱放",), "city.illegal_building": ("违章搭建",),
        "city.road_damage": ("道路破损",), "city.waste_collection": ("垃圾清运",), "city.noise": ("噪音扰民",),
        "hazard.fire_lane": ("消防通道堵塞",), "hazard.gas": ("燃气隐患",), "hazard.falling_objects": ("高空坠物",),
        "hazard.waterlogging": ("内涝积水",), "hazard.ebike_charging": ("电动车违规充电",),
    },
    "event_status": {
        "reported": ("上报", "已上报", "待受理", "reported"),
        "dispatched": ("已派遣", "处置中", "dispatched"),
        "resolved": ("已办结", "已处置", "resolved"),
        "closed": ("已结案", "已归档", "closed"),
    },
    "channel": {
        "grid_worker": ("网格员", "网格员上报", "grid_worker"),
        "hotline_12345": ("12345", "12345热线", "hotline_12345"),
        "app": ("app", "随手拍", "微信小程序"),
        "sensor": ("物联感知", "sensor"),
    },
    "device_kind": {
        "camera": ("视频监控", "摄像头", "camera"),
        "air_station": ("空气监测站", "大气监测站", "air_station"),
        "water_station": ("水质监测站", "water_station"),
    },
    "device_status": {
        "normal": ("正常", "在线", "normal"),
        "alarm": ("告警", "报警", "alarm"),
        "offline": ("离线", "offline"),
    },
    "building_use": {
        "residential": ("住宅", "residential"),
        "commercial": ("商业", "商铺", "commercial"),
        "office": ("办公", "office"),
        "industrial": ("工业", "厂房", "industrial"),
        "public": ("公共", "公共建筑", "public"),
        "mixed": ("商住", "mixed"),
    },
    "road_class": {
        "arterial": ("主干路", "主干道", "快速路", "arterial"),
        "secondary": ("次干路", "次干道", "secondary"),
        "branch": ("支路", "branch"),
        "lane": ("街巷", "巷道", "小巷", "lane"),
    },
    "water_kind": {
        "river": ("河流", "河", "江", "river"),
        "creek": ("河涌", "涌", "creek"),
        "lake": ("湖泊", "湖", "水塘", "池塘", "lake", "pond"),
        "canal": ("渠道", "沟渠", "canal"),
        "patrol_route": ("巡河路线", "巡河路径", "patrol_route"),
    },
    "yes_no": {
        "true": ("是", "有", "true", "1", "y", "yes"),
        "false": ("否", "无", "false", "0", "n", "no"),
    },
}


@dataclass(frozen=True)
class Field:
    """One canonical column: name, SQL type, how ingest parses it, and whether it is personal."""

    name: str
    type: str = "text"  # text | int | float | bool | timestamp | date | category | multi
    vocab: str | None = None
    required: bool = False
    personal: bool = False
    doc: str = ""

    @property
    def sql_type(self) -> str:
        """The column type in both backends' SQL."""
        return {"text": "VARCHAR", "int": "BIGINT", "float": "DOUBLE PRECISION", "bool": "BOOLEAN",
                "timestamp": "TIMESTAMP", "date": "DATE", "category": "VARCHAR", "multi": "VARCHAR"}[self.type]


@dataclass(frozen=True)
class Entity:
    """One entity table of the canonical model."""

    name: str
    label: str
    geometry: str  # point | polygon | line | shape (lines or polygons) | none
    fields: tuple[Field, ...]
    doc: str = ""
    placed_via: str | None = None  # placed through a referenced entity's row, not by its own location
    field_map: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "field_map", {f.name: f for f in self.fields})

    @property
    def placed(self) -> bool:
        """Whether rows carry geometry and grid → district codes."""
        return self.geometry != "none"


F = Field
ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity("buildings", "房屋/建筑", "polygon", (
            F("address", required=True, doc="门牌地址 as delivered"),
            F("addr_key", doc="normalised road + 号 + 栋 key that addresses are matched on"),
            F("name"),
            F("floors", "int"),
            F("use", "category", "building_use"),
            F("fire_facilities", "bool", "yes_no"),
            F("rented", "bool", "yes_no"),
            F("year_built", "int"),
        ), doc="Building footprints; people, households and organisations are matched to them by address."),
        Entity("people", "人口", "point", (
            F("name", personal=True),
            F("id_number", personal=True, doc="身份证号"),
            F("phone", personal=True),
            F("gender", "category", "gender"),
            F("birth_date", "date"),
            F("origin", doc="来源地 (province or city of origin)"),
            F("residence", "category", "residence", required=True, doc="registered (户籍) or floating (流动)"),
            F("household_id"),
            F("address", required=True, personal=True),
            F("unit_no", doc="单元"),
            F("room", personal=True, doc="室/房号"),
            F("building_id", doc="buildings.id matched from the address"),
            F("special_groups", "multi", "special_group", doc="';'-joined codes"),
        ),
            doc="Population register; placed at its building (geometry = the building's point on surface)."),
        Entity("organisations", "组织", "point", (
            F("name", required=True),
            F("kind", "category", "org_kind", required=True),
            F("industry", "category", "industry"),
            F("size", "int", doc="employees or members"),
            F("active", "bool", "active"),
            F("address"),
            F("phone", personal=True),
            F("contact", personal=True),
        ), doc="Enterprises, party organisations, party-mass service centres, schools, canteens…"),
        Entity("events", "事件", "point", (
            F("class", "category", "event_class", required=True,
              doc="the top level: service, dispute, city or hazard (taken from `type` when not delivered)"),
            F("type", "category", "event_type", doc="the item type, two levels: <class>.<item> (city.noise)"),
            F("status", "category", "event_status", required=True),
            F("reported_at", "timestamp", required=True),
            F("dispatched_at", "timestamp"),
            F("resolved_at", "timestamp"),
            F("closed_at", "timestamp"),
            F("channel", "category", "channel", doc="the event's source: grid worker, 12345 hotline, app…"),
            F("description"),
            F("reporter_phone", personal=True),
        ), doc="Appeals and incidents with their lifecycle reported → dispatched → resolved → closed."),
        Entity("party_members", "党员", "point", (
            F("name", personal=True),
            F("id_number", personal=True),
            F("person_id", doc="people.id with the same id_number, when registered"),
            F("organisation_ref", doc="the party organisation's id in its own register"),
            F("organisation_id", doc="organisations.id resolved from organisation_ref"),
            F("linked_households", doc="';'-joined household ids this member is linked to (点对点联系)"),
            F("linked_count", "int"),
            F("address", required=True, personal=True),
            F("building_id"),
        ), doc="Party members, placed at the building of their address."),
        Entity("devices", "设备", "point", (
            F("name"),
            F("kind", "category", "device_kind", required=True),
            F("status", "category", "device_status"),
            F("installed_at", "date"),
        ), doc="Video points, air and water monitoring stations."),
        Entity("device_readings", "监测读数", "point", (
            F("device_ref", required=True, doc="the device's id in its own register"),
            F("device_id", doc="devices.id resolved from device_ref"),
            F("ts", "timestamp", required=True),
            F("metric", required=True),
            F("value", "float", required=True),
            F("unit"),
            F("alarm", "bool", "yes_no"),
        ), placed_via="devices", doc="Sensor readings; placed at their device (codes and point copied from it)."),
        Entity("roads", "道路", "line", (
            F("name", doc="路名"),
            F("class", "category", "road_class", doc="arterial, secondary, branch or lane"),
        ), doc="The street network as lines (segments, as a surveying bureau delivers them); the map's roads."),
        Entity("waters", "水系", "shape", (
            F("name", doc="河湖名称"),
            F("kind", "category", "water_kind", required=True, doc="river, creek (河涌), lake, canal or patrol route"),
            F("reach", doc="河段: the reach a river chief is assigned"),
        ), doc="Rivers, 河涌 and lakes as lines or polygons, and river chiefs' patrol routes; the map's water."),
    )
}

#: Ingest provenance columns, first in every entity table.
PROVENANCE = (
    ("id", "VARCHAR", "source || ':' || source_id, unique across the database"),
    ("source", "VARCHAR", "the manifest source name the row came from"),
    ("source_id", "VARCHAR", "the row's id in its source file"),
    ("row_hash", "VARCHAR", "hash of the loaded values; an unchanged re-ingest leaves the row alone"),
    ("ingest_run", "VARCHAR", "the ingest run that last wrote the row"),
)
