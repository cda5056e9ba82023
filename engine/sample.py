"""Sample data: realistic (made-up) Chinese CRM exports for demos, tests and the benchmark.

``write_sample`` writes ``customers.xlsx`` (sheet 客户信息, Chinese headers, a title row above the
header), ``interactions.xlsx`` (sheet 互动记录) and ``orders.xlsx`` (sheet 订单, English headers). The
output is deterministic: the same arguments give byte-identical files.

With ``messy=True`` a few percent of the cells look like real exports do (dates as text or Excel serial
numbers, full-width digits, phone numbers stored as numbers, amounts like "¥1,200.50", "—" for empty),
and a handful of rows are deliberately unusable so that ``rejects`` is not empty: one row without a
customer id, one duplicated customer id (the later row wins), one interaction with an impossible date,
one interaction for an unknown customer, one order with an unreadable quantity (row kept) and a 合计
row under the orders. Counts read back are exact: ``customers``, ``round(customers *
interactions_per_customer)`` interactions and ``round(customers * orders_per_customer)`` orders.

All names, phone numbers and addresses are random; any resemblance to real people is coincidence.
"""
from __future__ import annotations

import math
import random
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Sequence

import xlsxwriter

__all__ = ["write_sample", "CUSTOMER_HEADERS", "INTERACTION_HEADERS", "ORDER_HEADERS"]

CUSTOMER_HEADERS = ["客户编号", "客户名称", "联系人", "手机号码", "邮箱", "微信号", "性别", "生日", "农历生日", "行业",
                    "公司规模", "城市", "客户来源", "推荐人", "客户经理", "客户阶段", "销售阶段", "需求类型", "签约日期",
                    "营销许可", "退订", "偏好渠道", "会员等级", "积分", "备注"]
INTERACTION_HEADERS = ["互动编号", "客户编号", "创建时间", "渠道", "互动类型", "首次响应时间", "解决时间", "状态", "满意度",
                       "处理人", "问题分类", "内容"]
ORDER_HEADERS = ["Order ID", "Customer ID", "Order Date", "Amount", "Product", "Quantity"]

_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
             "钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉萍红玲芬燕彬鹏辉斌宇浩凯健俊帆旭宁欣怡佳琳晨雪梅婷倩颖涵轩然诺桐远"
_PINYIN = ("wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "xu", "sun", "ma", "zhu", "hu",
           "guo", "he", "lin", "luo", "gao", "wei", "fang", "jie", "ming", "hui", "ling", "hao", "yu", "xin", "jun")
_MAIL_DOMAINS = ("qq.com", "163.com", "126.com", "sina.com", "gmail.com", "outlook.com", "foxmail.com")
_CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆", "苏州", "天津", "长沙", "郑州",
           "青岛", "厦门", "宁波", "合肥", "济南", "昆明")
_COMPANY_WORDS = ("华信", "宏达", "鼎盛", "恒通", "瑞丰", "天成", "金桥", "博远", "中科", "新源", "盛世", "永安", "嘉禾",
                  "凯旋", "东方", "锦程", "融创", "启明", "汇通", "德润")
_INDUSTRIES = {  # industry -> company-name suffix
    "制造业": "制造有限公司", "零售": "商贸有限公司", "互联网": "网络科技有限公司", "金融": "投资管理有限公司",
    "教育": "教育科技有限公司", "医疗": "医疗器械有限公司", "房地产": "置业有限公司", "餐饮": "餐饮管理有限公司",
    "物流": "物流有限公司", "能源": "能源科技有限公司",
}
_SIZES = ("1-49人", "50-199人", "200-999人", "1000人以上")
_SOURCES = ("官网", "展会", "转介绍", "电话营销", "广告投放", "老客户推荐", "线下门店")
_OWNERS = ("王磊", "李娜", "张伟", "刘洋", "陈静", "杨帆", "赵敏", "周杰")
_AGENTS = ("孙悦", "吴倩", "郑浩", "何欣", "林晓", "马丽")
_LIFECYCLE = (("潜在", 0.20), ("意向", 0.15), ("签约", 0.55), ("流失", 0.10))
_SALES_STAGE = {"潜在": ("咨询", "首面"), "意向": ("意向", "谈价"), "签约": ("成交", "售后"), "流失": ("售后", "谈价", "成交")}
_LEVELS = (("普通", 0.55), ("银卡", 0.25), ("金卡", 0.15), ("钻石", 0.05))
_NOTES = ("重要客户，注意维护", "对价格敏感", "偏好上午联系", "需开具增值税专票", "年底有采购计划", "决策周期较长")
_PRODUCTS = (("标准版软件", 2980.0), ("专业版软件", 6800.0), ("企业版套餐", 19800.0), ("年度维保服务", 3600.0),
             ("培训服务", 1500.0), ("智能终端A型", 1299.0), ("智能终端B型", 2399.0), ("耗材包", 199.0),
             ("定制开发", 50000.0), ("咨询服务", 8000.0))
_TYPES = {  # lifecycle -> interaction type weights
    "潜在": (("咨询", 55), ("回访", 15), ("关怀", 10), ("拜访", 10), ("建议", 5), ("投诉", 5)),
    "意向": (("咨询", 35), ("回访", 20), ("拜访", 20), ("关怀", 10), ("建议", 5), ("投诉", 5), ("购买", 5)),
    "签约": (("咨询", 25), ("回访", 20), ("关怀", 12), ("拜访", 10), ("购买", 13), ("投诉", 12), ("建议", 8)),
    "流失": (("咨询", 20), ("回访", 20), ("关怀", 10), ("拜访", 5), ("购买", 10), ("投诉", 28), ("建议", 7)),
}
_CHANNELS = {
    "咨询": ("电话", "微信", "在线客服", "官网留言", "邮件"),
    "投诉": ("电话", "在线客服", "微信", "官网留言", "邮件"),
    "建议": ("官网留言", "微信", "邮件", "在线客服"),
    "回访": ("电话", "微信"),
    "拜访": ("上门拜访",),
    "关怀": ("微信", "电话", "邮件"),
    "购买": ("在线客服", "电话", "上门拜访", "微信"),
}
_CATEGORIES = ("产品质量", "服务态度", "物流", "价格", "竞争对手")
_CONTENT = {
    "咨询": ("咨询{p}价格", "咨询{p}功能", "询问发货时间", "咨询续费政策", "咨询发票开具"),
    "建议": ("建议增加批量导出功能", "建议优化下单流程", "建议提供上门培训", "希望增加更多支付方式"),
    "回访": ("售后回访，客户反馈良好", "回访使用情况，提出小问题", "回访满意度", "季度回访"),
    "拜访": ("上门拜访，沟通年度合作计划", "拜访客户负责人，介绍新品", "现场了解使用情况"),
    "关怀": ("节日问候", "生日祝福", "新品试用邀请", "会员活动通知"),
    "购买": ("下单购买{p}", "追加采购{p}", "续费{p}"),
}
_COMPLAINT = {
    "产品质量": ("反映{p}出现故障", "{p}使用中频繁报错", "收到的{p}有破损"),
    "服务态度": ("对客服回复态度不满", "多次来电无人跟进"),
    "物流": ("物流延迟，未按时送达", "快递丢件"),
    "价格": ("认为价格高于同类产品", "对续费涨价不满"),
    "竞争对手": ("提到竞争对手报价更低，考虑更换", "竞品提供免费试用，要求同等条件"),
}
_FULL_WIDTH = str.maketrans("0123456789-:/.", "０１２３４５６７８９－：／．")
_MESSY = 0.03  # share of messy cells per column when messy=True


def write_sample(
    out_dir: Path,
    customers: int,
    seed: int,
    *,
    as_of: date = date(2026, 11, 20),
    interactions_per_customer: float = 10,
    orders_per_customer: float = 3,
    messy: bool = True,
) -> list[Path]:
    """Write customers.xlsx, interactions.xlsx and orders.xlsx into ``out_dir``; return their paths."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    gen = _Generator(rng, as_of, messy)
    people = [gen.customer(i + 1, customers) for i in range(customers)]
    n_inter = round(customers * interactions_per_customer)
    n_orders = round(customers * orders_per_customer)
    inter_counts = _allocate(rng, n_inter, [p["activity"] for p in people])
    order_counts = _allocate(rng, n_orders, [p["buying"] for p in people])
    # A few complaints still open in the last days before as_of, so SLA checks have work to do.
    with_inter = [i for i, c in enumerate(inter_counts) if c > 0]
    open_complaints = set(rng.sample(with_inter, min(len(with_inter), max(5, customers // 100))))

    paths = [out_dir / "customers.xlsx", out_dir / "interactions.xlsx", out_dir / "orders.xlsx"]
    gen.write_customers(paths[0], people)
    gen.write_interactions(paths[1], people, inter_counts, open_complaints)
    gen.write_orders(paths[2], people, order_counts)
    return paths


def _allocate(rng: random.Random, total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` over customers in proportion to ``weights`` (exactly ``total`` in all)."""
    w_sum = sum(weights)
    if w_sum <= 0:
        weights, w_sum = [1.0] * len(weights), float(len(weights))
    exact = [total * w / w_sum for w in weights]
    counts = [int(e) for e in exact]
    rest = total - sum(counts)
    if rest > 0:
        fractions = [e - c for e, c in zip(exact, counts)]
        if sum(fractions) <= 0:
            fractions = [1.0] * len(counts)
        for i in rng.choices(range(len(counts)), weights=fractions, k=rest):
            counts[i] += 1
    return counts


class _Book:
    """An xlsxwriter workbook in constant-memory mode with a reproducible zip (fixed created time)."""

    def __init__(self, path: Path, sheet: str, created: datetime):
        self.wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                                  "strings_to_formulas": False, "strings_to_urls": False})
        self.wb.set_properties({"title": path.stem, "author": "crm-policy-engine sample", "created": created})
        self.ws = self.wb.add_worksheet(sheet)
        self.date_fmt = self.wb.add_format({"num_format": "yyyy-mm-dd"})
        self.dt_fmt = self.wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.money_fmt = self.wb.add_format({"num_format": "#,##0.00"})
        self.bold = self.wb.add_format({"bold": True})

    def row(self, r: int, values: Sequence[Any], money_col: int = -1) -> None:
        ws = self.ws
        for c, v in enumerate(values):
            if v is None:
                continue
            t = type(v)
            if t is str:
                ws.write_string(r, c, v)
            elif t is datetime:
                ws.write_datetime(r, c, v, self.dt_fmt)
            elif t is date:
                ws.write_datetime(r, c, v, self.date_fmt)
            elif c == money_col:
                ws.write_number(r, c, v, self.money_fmt)
            else:
                ws.write_number(r, c, v)

    def close(self) -> None:
        self.wb.close()


class _Generator:
    def __init__(self, rng: random.Random, as_of: date, messy: bool):
        self.rng = rng
        self.as_of = as_of
        self.as_of_dt = datetime.combine(as_of, time(0))
        self.messy = messy
        self.created = datetime.combine(as_of, time(6, 0))

    # -- small helpers ------------------------------------------------------------------------------
    def person_name(self) -> str:
        r = self.rng
        given = r.choice(_GIVEN) + (r.choice(_GIVEN) if r.random() < 0.7 else "")
        return r.choice(_SURNAMES) + given

    def phone(self) -> str:
        r = self.rng
        return "1" + r.choice("3456789") + "".join(r.choice("0123456789") for _ in range(9))

    def mess(self) -> bool:
        return self.messy and self.rng.random() < _MESSY

    def messy_date(self, d: date) -> Any:
        """A date as a real date cell, or (sometimes) the way sloppy exports write it."""
        if not self.mess():
            return d
        style = self.rng.randrange(7)
        if style == 0:
            return f"{d.year}/{d.month}/{d.day}"
        if style == 1:
            return f"{d.year}年{d.month}月{d.day}日"
        if style == 2:
            return d.strftime("%Y%m%d")
        if style == 3:
            return f"{d.year}.{d.month}.{d.day}"
        if style == 4:
            return float((d - date(1899, 12, 30)).days)  # Excel serial in a plain number cell
        if style == 5:
            return d.isoformat().translate(_FULL_WIDTH)
        return d.isoformat()

    def messy_datetime(self, t: datetime) -> Any:
        if not self.mess():
            return t
        style = self.rng.randrange(5)
        if style == 0:
            return f"{t.year}/{t.month}/{t.day} {t.hour}:{t.minute:02d}:{t.second:02d}"
        if style == 1:
            return f"{t.year}年{t.month}月{t.day}日 {t.hour}时{t.minute}分"
        if style == 2:
            return t.strftime("%Y-%m-%d %H:%M")
        if style == 3:
            delta = t - datetime(1899, 12, 30)
            return delta.days + delta.seconds / 86400  # Excel serial with a time fraction
        return t.strftime("%Y-%m-%d %H:%M:%S").translate(_FULL_WIDTH)

    def messy_phone(self, p: str) -> Any:
        if not self.mess():
            return p
        style = self.rng.randrange(5)
        if style == 0:
            return float(p)  # a number cell: 13812345678.0
        if style == 1:
            return f"{p[:3]} {p[3:7]} {p[7:]}"
        if style == 2:
            return f"{p[:3]}-{p[3:7]}-{p[7:]}"
        if style == 3:
            return "+86 " + p
        return f"{p[0]}.{p[1:]}E10"

    def messy_blank(self) -> Any:
        return self.rng.choice(("—", "无", "N/A", "-", " ")) if self.mess() else None

    # -- customers ---------------------------------------------------------------------------------
    def customer(self, n: int, total: int) -> dict[str, Any]:
        r = self.rng
        width = max(6, len(str(total + 1000)))
        company = r.random() < 0.45
        person = self.person_name()
        industry = r.choice(list(_INDUSTRIES))
        city = r.choice(_CITIES)
        stage = _weighted(r, _LIFECYCLE)
        if stage == "签约":
            pattern = _weighted(r, (("steady", 0.5), ("growing", 0.25), ("fading", 0.25)))
        elif stage == "流失":
            pattern = _weighted(r, (("churned", 0.7), ("fading", 0.3)))
        elif stage == "意向":
            pattern = "steady" if r.random() < 0.3 else "none"
        else:
            pattern = "none"  # 潜在: no orders yet
        size_factor = 3.0 if company else 1.0
        buying = {"none": 0.0, "steady": 1.0, "growing": 1.2, "fading": 1.0, "churned": 0.7}[pattern]
        buying *= 0.4 if stage == "意向" else 1.0
        activity = {"潜在": 0.4, "意向": 1.0, "签约": 1.2, "流失": 0.7}[stage] * r.uniform(0.5, 1.5)
        source = r.choice(_SOURCES)
        age = r.randint(22, 70)
        bday = date(self.as_of.year - age, r.randint(1, 12), r.randint(1, 28)) if r.random() < 0.9 else None
        lunar = bday is not None and r.random() < 0.15
        signed = None
        if stage in ("签约", "流失"):
            signed = self.as_of - timedelta(days=r.randint(30, 5 * 365))
        consent_roll = r.random()
        consent = "是" if consent_roll < 0.70 else ("否" if consent_roll < 0.95 else None)
        level = _weighted(r, _LEVELS)
        email = None
        if r.random() < 0.7:
            user = r.choice(_PINYIN) + r.choice(_PINYIN) + str(r.randint(1, 9999))
            domain = r.choice(_MAIL_DOMAINS)
            email = f"{r.randint(10000, 999999999)}@qq.com" if domain == "qq.com" else f"{user}@{domain}"
        wechat = None
        if r.random() < 0.6:
            wechat = ("wxid_" + "".join(r.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(10))
                      if r.random() < 0.5 else r.choice(_PINYIN) + r.choice(_PINYIN) + str(r.randint(10, 9999)))
        return {
            "id": f"C{n:0{width}d}",
            "name": f"{city}{r.choice(_COMPANY_WORDS)}{_INDUSTRIES[industry]}" if company else person,
            "contact": person if company else None,
            "phone": self.phone() if r.random() < 0.97 else None,
            "email": email,
            "wechat": wechat,
            "gender": r.choice(("男", "女")),
            "birthday": bday,
            "lunar": None if bday is None else ("是" if lunar else "否"),
            "industry": industry if company or r.random() < 0.3 else None,
            "size": r.choice(_SIZES) if company else None,
            "region": city,
            "source": source,
            "referrer": self.person_name() if source in ("转介绍", "老客户推荐") else None,
            "owner": r.choice(_OWNERS) if r.random() < 0.95 else None,
            "stage": stage,
            "sales_stage": r.choice(_SALES_STAGE[stage]),
            "need": _weighted(r, (("普通", 0.8), ("战略", 0.1 if not company else 0.2), ("特殊需求", 0.1))),
            "signed": signed,
            "consent": consent,
            "opt_out": "是" if r.random() < 0.03 else "否",
            "channel": _weighted(r, (("短信", 0.35), ("邮件", 0.2), ("微信", 0.4), (None, 0.05))),
            "level": level,
            "points": float(r.randint(0, 20000)) if level != "普通" or r.random() < 0.5 else None,
            "notes": r.choice(_NOTES) if r.random() < 0.1 else None,
            # not written: drive the interactions and orders
            "company": company,
            "pattern": pattern,
            "buying": buying * size_factor ** 0.3,
            "activity": activity,
            "spend": r.lognormvariate(7.5, 0.7) * size_factor,
        }

    def customer_row(self, p: dict[str, Any]) -> list[Any]:
        r = self.rng
        consent = p["consent"]
        if consent is not None and self.mess():
            consent = r.choice(("Y", "同意", "√", "1")) if consent == "是" else r.choice(("N", "不同意", "0"))
        gender = p["gender"]
        if self.mess():
            gender = {"男": r.choice(("M", "男性", "先生")), "女": r.choice(("F", "女性", "女士"))}[gender]
        stage = p["stage"]
        if self.mess():
            stage = {"潜在": "prospect", "意向": "意向客户", "签约": "已签约", "流失": "churned"}[stage]
        return [
            p["id"], p["name"], p["contact"],
            self.messy_phone(p["phone"]) if p["phone"] else self.messy_blank(),
            p["email"] or self.messy_blank(), p["wechat"] or self.messy_blank(), gender,
            self.messy_date(p["birthday"]) if p["birthday"] else None, p["lunar"],
            p["industry"], p["size"], p["region"], p["source"], p["referrer"], p["owner"], stage, p["sales_stage"],
            p["need"], self.messy_date(p["signed"]) if p["signed"] else None, consent, p["opt_out"], p["channel"],
            p["level"], p["points"], p["notes"],
        ]

    def write_customers(self, path: Path, people: list[dict[str, Any]]) -> None:
        book = _Book(path, "客户信息", self.created)
        r = 0
        if self.messy:  # a title line and an empty line above the header, as many exports have
            book.ws.write_string(0, 0, f"客户信息导出 {self.as_of.isoformat()}", book.bold)
            r = 2
        book.row(r, CUSTOMER_HEADERS)
        r += 1
        bad_at = len(people) // 3 if self.messy else -1
        for i, p in enumerate(people):
            if i == bad_at:  # a record someone forgot to give an id: rejected as missing-value
                row = self.customer_row(self.customer(0, len(people)))
                row[0] = None
                book.row(r, row)
                r += 1
            book.row(r, self.customer_row(p))
            r += 1
        if self.messy:  # the same customer exported again with newer data: the later row wins
            again = dict(people[len(people) // 2])
            again["owner"] = self.rng.choice(_OWNERS)
            book.row(r, self.customer_row(again))
            r += 1
        book.ws.set_column(0, len(CUSTOMER_HEADERS) - 1, 12)
        book.close()

    # -- interactions ------------------------------------------------------------------------------
    def interaction_time(self, pattern: str) -> datetime:
        r = self.rng
        if pattern == "churned":
            days = r.uniform(150, 730)
        elif pattern == "fading":
            days = r.uniform(200, 730) if r.random() < 0.8 else r.uniform(0, 200)
        else:
            days = r.uniform(0, 730)
        day = self.as_of - timedelta(days=int(days) + 1)
        return datetime.combine(day, time(r.randint(8, 20), r.randint(0, 59), r.randint(0, 59)))

    def interaction(self, p: dict[str, Any], when: datetime, force_open: bool) -> dict[str, Any]:
        r = self.rng
        kind = "投诉" if force_open else _weighted(r, _TYPES[p["stage"]])
        product = r.choice(_PRODUCTS)[0]
        rec: dict[str, Any] = {"time": when, "type": kind, "channel": r.choice(_CHANNELS[kind]), "first": None,
                               "resolved": None, "status": None, "satisfaction": None, "category": None}
        owner = p["owner"]
        if kind in ("拜访", "回访", "关怀") and owner:
            rec["staff"] = owner
        else:
            rec["staff"] = r.choice(_AGENTS)
        if kind == "投诉":
            cat = r.choice(_CATEGORIES)
            rec["category"] = cat
            rec["content"] = r.choice(_COMPLAINT[cat]).format(p=product)
            if force_open:
                minutes_before = r.randint(120, 5 * 24 * 60)
                rec["time"] = when = self.as_of_dt - timedelta(minutes=minutes_before)
                rec["status"] = r.choice(("待处理", "处理中", "待客户回复"))
                if rec["status"] != "待处理":
                    rec["first"] = when + timedelta(minutes=r.randint(10, 600))
                    if rec["first"] >= self.as_of_dt:
                        rec["first"], rec["status"] = None, "待处理"
                elif minutes_before % 2 == 0:
                    # Opened the morning before as_of and answered quickly: most of the resolution
                    # time is used up, so the SLA stage has at-risk items to show. Derived from
                    # draws already made, so the rest of the sample stays as it was.
                    rec["time"] = when = datetime.combine(self.as_of - timedelta(days=1), time(10, minutes_before % 30))
                    rec["first"], rec["status"] = when + timedelta(minutes=20 + minutes_before % 20), "处理中"
                return rec
            first = when + timedelta(minutes=int(r.expovariate(1 / 180)) + 5)
            resolved = first + timedelta(minutes=r.randint(60, 5 * 24 * 60))
            if first >= self.as_of_dt:
                rec["status"] = "待处理"
            elif resolved >= self.as_of_dt:
                rec["first"], rec["status"] = first, r.choice(("处理中", "待客户回复"))
            else:
                rec["first"], rec["resolved"] = first, resolved
                rec["status"] = r.choice(("已解决", "已关闭"))
                if r.random() < 0.6:
                    rec["satisfaction"] = _weighted(r, ((1, 0.15), (2, 0.2), (3, 0.3), (4, 0.25), (5, 0.1)))
            return rec
        rec["content"] = r.choice(_CONTENT[kind]).format(p=product)
        if kind in ("咨询", "建议"):
            rec["status"] = "已关闭"
            rec["first"] = when + timedelta(minutes=r.randint(1, 240))
            if rec["first"] >= self.as_of_dt:
                rec["first"], rec["status"] = None, "待处理"
        if kind in ("咨询", "回访") and r.random() < 0.3:
            rec["satisfaction"] = _weighted(r, ((3, 0.15), (4, 0.4), (5, 0.45)))
        return rec

    def interaction_row(self, iid: str, cid: str, rec: dict[str, Any]) -> list[Any]:
        r = self.rng
        if self.mess():
            cid = r.choice((cid.translate(str.maketrans("C0123456789", "Ｃ０１２３４５６７８９")), f" {cid} "))
        kind = rec["type"]
        if self.mess():
            kind = {"咨询": "inquiry", "投诉": "complaint", "建议": "suggestion", "回访": "follow-up", "拜访": "visit",
                    "关怀": "care", "购买": "purchase"}[kind]
        channel = rec["channel"]
        if self.mess():
            channel = {"电话": "phone", "邮件": "email", "微信": "WeChat", "在线客服": "在线咨询", "上门拜访": "visit",
                       "官网留言": "网站留言"}[channel]
        sat = rec["satisfaction"]
        if sat is not None:
            sat = str(sat) if self.mess() else float(sat)
        return [iid, cid, self.messy_datetime(rec["time"]), channel, kind,
                self.messy_datetime(rec["first"]) if rec["first"] else None,
                self.messy_datetime(rec["resolved"]) if rec["resolved"] else None,
                rec["status"], sat, rec["staff"], rec["category"], rec["content"]]

    def write_interactions(self, path: Path, people: list[dict[str, Any]], counts: list[int],
                           open_complaints: set[int]) -> None:
        book = _Book(path, "互动记录", self.created)
        book.row(0, INTERACTION_HEADERS)
        r = 1
        seq = 0
        bad_at = {len(people) // 4, len(people) // 2} if self.messy else set()
        for i, (p, n) in enumerate(zip(people, counts)):
            times = sorted(self.interaction_time(p["pattern"]) for _ in range(n))
            for k, when in enumerate(times):
                rec = self.interaction(p, when, force_open=(i in open_complaints and k == n - 1))
                seq += 1
                book.row(r, self.interaction_row(f"I{seq:08d}", p["id"], rec))
                r += 1
            if i in bad_at:
                seq += 1
                rec = self.interaction(p, self.interaction_time("steady"), force_open=False)
                row = self.interaction_row(f"I{seq:08d}", p["id"], rec)
                if i == len(people) // 4:
                    row[2] = "2025-13-45 10:00"  # impossible date: rejected as bad-date
                else:
                    row[1] = f"C{len(people) + 500:0{max(6, len(str(len(people) + 1000)))}d}"  # unknown customer
                book.row(r, row)
                r += 1
        book.ws.set_column(0, len(INTERACTION_HEADERS) - 1, 14)
        book.close()

    # -- orders ------------------------------------------------------------------------------------
    def order_date(self, pattern: str) -> date:
        r = self.rng
        if pattern == "growing":
            days = 730 * (1 - math.sqrt(r.random()))  # more orders recently
        elif pattern == "fading":  # frequent last year, few recently
            roll = r.random()
            days = r.uniform(365, 730) if roll < 0.8 else (r.uniform(120, 365) if roll < 0.95 else r.uniform(0, 120))
        elif pattern == "churned":
            days = r.uniform(200, 730)
        else:
            days = r.uniform(0, 730)
        return self.as_of - timedelta(days=int(days) + 1)

    def write_orders(self, path: Path, people: list[dict[str, Any]], counts: list[int]) -> None:
        book = _Book(path, "订单", self.created)
        book.row(0, ORDER_HEADERS)
        r = 1
        seq = 0
        total_amount = 0.0
        total_qty = 0.0
        bad_qty_at = len(people) // 3 if self.messy else len(people)
        bad_qty_done = False
        rng = self.rng
        for i, (p, n) in enumerate(zip(people, counts)):
            dates = sorted(self.order_date(p["pattern"]) for _ in range(n))
            for d in dates:
                product, price = rng.choice(_PRODUCTS)
                qty = float(rng.randint(1, 10) if price < 5000 else rng.randint(1, 3))
                growth = 1.0
                if p["pattern"] == "growing":
                    growth = 0.6 + 0.9 * (1 - (self.as_of - d).days / 730)
                amount = p["spend"] * growth * rng.uniform(0.5, 1.5) + price * qty * 0.1
                amount = round(amount, 2) if rng.random() < 0.3 else float(round(amount))
                seq += 1
                total_amount += amount
                total_qty += qty
                oid = f"SO{d.strftime('%Y%m%d')}-{seq:07d}"
                row: list[Any] = [oid, p["id"], self.messy_date(d), self.messy_amount(amount), product,
                                  str(int(qty)) if self.mess() else qty]
                if bad_qty_at <= i and not bad_qty_done:
                    row[5] = "若干"  # unreadable optional cell: the order is kept, quantity left empty
                    bad_qty_done = True
                book.row(r, row, money_col=3)
                r += 1
        if self.messy:  # the summary line many exports end with: rejected as summary-row
            book.row(r, ["合计", None, None, round(total_amount, 2), None, total_qty], money_col=3)
        book.ws.set_column(0, len(ORDER_HEADERS) - 1, 14)
        book.close()

    def messy_amount(self, amount: float) -> Any:
        if not self.mess():
            return amount
        style = self.rng.randrange(4)
        if style == 0:
            return f"¥{amount:,.2f}"
        if style == 1:
            return f"￥{amount:.0f}" if amount.is_integer() else f"￥{amount}"
        if style == 2:
            return f"{amount:,.0f}元" if amount.is_integer() else f"{amount:,.2f}元"
        return f"RMB {amount:.2f}"


def _weighted(rng: random.Random, choices: Sequence[tuple[Any, float]]) -> Any:
    roll = rng.random() * sum(w for _, w in choices)
    for value, w in choices:
        roll -= w
        if roll < 0:
            return value
    return choices[-1][0]
