"""The dashboards' labels in Chinese and English (the switch in the header picks one)."""

from __future__ import annotations

LABELS: dict[str, tuple[str, str]] = {
    "title": ("{name}一张图", "One map of {name}"),  # the district's name comes from the data
    "title_plain": ("一张图", "One map"),
    "signin": ("登录", "Sign in"),
    "signin_hint": ("输入 `brain users add` 打印的令牌，或用户名和密码。",
                    "Paste the token `brain users add` printed, or your name and password."),
    "token": ("令牌", "Token"),
    "name": ("用户名", "Name"),
    "password": ("密码", "Password"),
    "signout": ("退出", "Sign out"),
    "bad_signin": ("令牌或用户名/密码不正确。", "Unknown token, or wrong name or password."),
    "throttled": ("登录失败次数过多，请 {n} 分钟后再试，或请管理员重设密码。",
                  "Too many failed sign-ins: try again in {n} minutes, or ask an administrator for a new password."),
    "or": ("— 或 —", "— or —"),
    "snapped": ("统计按整网格发布：圈选区域对应 {n} 个网格，人口与事件数已按 5 取整。",
                "Counts are published for whole grids: the drawn area covers {n} grids; people and event counts "
                "are rounded to 5."),
    "layers": ("图层", "Layers"),
    "units": ("行政区划", "Units"),
    "indicators": ("指标", "Indicators"),
    "building": ("楼栋", "Building"),
    "events": ("事件", "Events"),
    "mypage": ("我的页面", "My page"),
    "map": ("一张图", "Map"),
    "drawn_area": ("圈选区域", "Drawn area"),
    "resources": ("区域内资源", "Resources in the area"),
    "click_building": ("在地图上点击楼栋（放大到 15 级以上）。", "Click a building on the map (zoom 15 or closer)."),
    "households": ("住户", "Households"),
    "residents": ("居民", "Residents"),
    "organisations": ("组织", "Organisations"),
    "recent_events": ("近期事件", "Recent events"),
    "open_overdue": ("未办结与超时事件", "Open and overdue events"),
    "add_widget": ("添加磁铁", "Add a widget"),
    "remove": ("移除", "Remove"),
    "personal_hidden": ("本角色不可查看个人信息，仅显示统计。", "Your role sees counts, not residents."),
    "none": ("无", "none"),
    "basemap": ("在线底图", "Online basemap"),
    "search": ("搜索", "Search"),
    "search_hint": ("地址、组织或姓名", "Address, organisation or name"),
    "buildings": ("楼栋", "Building"),
    "people": ("人员", "Person"),
}

WIDGETS: dict[str, tuple[str, str]] = {
    "headline": ("核心指标", "Headline numbers"),
    "age": ("年龄结构", "Age pyramid"),
    "origin": ("来源地", "Origin"),
    "events_time": ("事件状态趋势", "Events by status over time"),
    "resolution": ("办结率", "Resolution rate"),
    "overdue": ("超时事件", "Overdue events"),
    "party": ("党建覆盖", "Party coverage"),
    "ranking": ("下级排名", "Unit ranking"),
    "alarms": ("监测告警", "Sensor alarms"),
}


def t(key: str, lang: str) -> str:
    """One label in the chosen language ('zh' or 'en')."""
    zh, en = LABELS.get(key) or WIDGETS[key]
    return en if lang == "en" else zh


def bilingual(label: str, lang: str) -> str:
    """Pick one half of a model label written '中文 english' (indicator and layer titles)."""
    head, _, tail = label.partition(" ")
    if not tail or head.isascii():
        return label
    return tail if lang == "en" else head
