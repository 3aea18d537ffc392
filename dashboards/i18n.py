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
    "age_band": ("年龄段", "age band"),
    "basemap": ("在线底图", "Online basemap"),
    "search": ("搜索", "Search"),
    "search_hint": ("地址、组织或姓名", "Address, organisation or name"),
    "buildings": ("楼栋", "Building"),
    "people": ("人员", "Person"),
    "organisation": ("组织", "Organisation"),
    "device": ("设备", "Device"),
    "event": ("事件", "Event"),
    "detail": ("详情", "Details"),
    "click_feature": ("在地图上点击事件、设备、组织、人员或楼栋查看详情。",
                      "Click an event, device, organisation, person or building on the map."),
    "theme": ("专题", "Theme"),
    "theme_none": ("不显示专题", "No theme"),
    "theme_hint": ("按网格分级着色，放大后显示单个要素。", "Shaded per grid; single features show when zoomed in."),
    "grids": ("个网格", "grids"),
    "heatmap": ("热力图（点图层）", "Heatmap for point layers"),
    "time": ("时间", "Time"),
    "today": ("今天", "Today"),
    "7d": ("近 7 天", "7 days"),
    "month": ("本月", "This month"),
    "all": ("全部", "All"),
    "last_days": ("近 {n} 天", "Last {n} days"),
    "since": ("自 {d} 起", "since {d}"),
    "status": ("状态", "Status"),
    "class": ("大类", "Class"),
    "any": ("全部", "Any"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "page_of": ("第 {p} / {n} 页，共 {t} 条", "Page {p} of {n}, {t} in all"),
    "events_in": ("事件列表", "Events"),
    "overdue_only": ("仅超时", "Overdue only"),
    "timeline": ("处置时间线", "Timeline"),
    "limits": ("时限", "Time limits"),
    "respond_by": ("响应时限", "Respond by"),
    "close_by": ("办结时限", "Close by"),
    "overdue": ("已超时", "overdue"),
    "on_time": ("未超时", "on time"),
    "readings": ("最新读数", "Latest readings"),
    "household": ("户", "Household"),
    "linked": ("党员联系户", "linked to a party member"),
    "floors_n": ("{n} 层", "{n} floors"),
    "rented": ("出租", "rented"),
    "csv": ("导出 CSV", "Export CSV"),
    "png": ("导出 PNG", "Export PNG"),
    "print": ("打印", "Print"),
    "link": ("复制链接", "Copy link"),
    "collapse": ("收起", "Collapse"),
    "expand": ("展开", "Expand"),
    "male": ("男", "men"),
    "female": ("女", "women"),
    "count": ("数量", "Count"),
    "month_axis": ("月份", "Month"),
    "draw_rect": ("画矩形（拖动）", "Draw a rectangle (drag)"),
    "draw_poly": ("画多边形（单击各点，双击结束）", "Draw a polygon (click the corners, double-click to finish)"),
    "draw_clear": ("清除圈选", "Clear the drawn areas"),
    "to3d": ("切换到 2.5D（楼栋按层数拉伸）", "Switch to 2.5D (buildings raised by floors)"),
    "to2d": ("切换到平面", "Switch to 2D"),
    "floors": ("层", " floors"),
}

#: Column labels of the records the panels show (residents table, feature panels).
FIELDS: dict[str, tuple[str, str]] = {
    "name": ("姓名/名称", "Name"), "id_number": ("身份证号", "ID number"), "phone": ("电话", "Phone"),
    "gender": ("性别", "Gender"), "birth_date": ("出生日期", "Born"), "origin": ("来源地", "Origin"),
    "residence": ("户籍/流动", "Residence"), "household_id": ("户号", "Household"), "address": ("地址", "Address"),
    "unit_no": ("单元", "Entrance"), "room": ("房号", "Room"), "special_groups": ("特殊人群", "Special groups"),
    "kind": ("类型", "Kind"), "industry": ("行业", "Industry"), "size": ("人数", "Size"), "active": ("在营", "Active"),
    "contact": ("联系人", "Contact"), "class": ("大类", "Class"), "type": ("小类", "Type"), "status": ("状态", "Status"),
    "reported_at": ("上报", "Reported"), "dispatched_at": ("派遣", "Dispatched"), "resolved_at": ("处置", "Resolved"),
    "closed_at": ("办结", "Closed"), "channel": ("来源渠道", "Channel"), "description": ("描述", "Description"),
    "reporter_phone": ("报告人电话", "Reporter's phone"), "installed_at": ("安装日期", "Installed"),
    "metric": ("指标", "Metric"), "value": ("数值", "Value"), "unit": ("单位", "Unit"), "alarm": ("告警", "Alarm"),
    "ts": ("时间", "Time"), "floors": ("层数", "Floors"), "use": ("用途", "Use"),
    "fire_facilities": ("消防设施", "Fire facilities"), "rented": ("出租", "Rented"),
    "year_built": ("建成年份", "Built"), "grid_code": ("网格", "Grid"),
}

#: MapLibre's own control titles, in each language.
MAP_LOCALE = {
    "zh": {"NavigationControl.ZoomIn": "放大", "NavigationControl.ZoomOut": "缩小",
           "NavigationControl.ResetBearing": "拖动旋转，单击恢复正北", "ScaleControl.Meters": "米",
           "ScaleControl.Kilometers": "千米"},
    "en": {},
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


def field_label(name: str, lang: str) -> str:
    """A record field's column label."""
    zh, en = FIELDS.get(name, (name, name))
    return en if lang == "en" else zh


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
