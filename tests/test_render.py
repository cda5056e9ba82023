from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from engine.errors import PolicyError
from engine.render import (
    RenderedMessage,
    filter_date,
    filter_mask_phone,
    filter_money,
    make_environment,
    render_message,
    template_fields,
    template_reads,
    template_variables,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CHANNELS = ("sms", "email", "wechat")
NAMES = ("offer", "follow_up", "birthday", "festival", "post_purchase", "member_day", "survey", "win_back")
ALLOWED_VARIABLES = {"customer", "company", "as_of", "params"}
MARKETING_SMS = {"offer", "follow_up", "birthday", "festival", "member_day", "win_back"}


def sample_context(**params) -> dict:
    return {
        "customer": {
            "customer_id": "C0001",
            "name": "星河贸易有限公司",
            "contact_person": "王磊",
            "owner": "李娜",
            "value_tier": "低",
            "phone": "13812345678",
            "points": None,  # customer record fields a run always has, blank here (member_day reads them)
            "member_level": None,
            "next_member_day": date(2026, 11, 22),  # a care feature every customer has in a run (member_day)
        },
        "company": {"name": "云帆科技", "hotline": "400-820-1234"},
        "as_of": date(2026, 11, 20),
        "params": params,
    }


FULL_PARAMS = {
    "offer": "本月新品8折优惠",
    "deadline": date(2026, 11, 30),
    "festival": "中秋节",
    "date": date(2026, 11, 18),
    "benefit": "全场9折并赠送精美礼品",
    "topic": "年度采购方案",
    "survey_url": "https://s.example.com/x1",
}

# The params each default template cannot do without (see templates/README.md).
REQUIRED_PARAMS = {"offer": {"offer"}, "festival": {"festival"}}


@pytest.fixture(scope="module")
def env():
    return make_environment(TEMPLATES)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_environment_is_immutable_sandbox_and_strict(env):
    assert isinstance(env, ImmutableSandboxedEnvironment)
    from jinja2 import StrictUndefined

    assert env.undefined is StrictUndefined
    assert env.keep_trailing_newline is True


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("name", NAMES)
def test_default_templates_render(env, channel, name):
    template = f"messages/{channel}/{name}.txt"
    message = render_message(env, template, sample_context(**FULL_PARAMS))
    assert isinstance(message, RenderedMessage)
    assert message.body and message.body == message.body.strip()
    assert "None" not in message.body and "{{" not in message.body and "{%" not in message.body
    assert "王磊" in message.body
    assert template_variables(env, template) <= ALLOWED_VARIABLES
    if channel == "email":
        assert message.subject
        assert "subject" not in message.body
    else:
        assert message.subject is None
    if channel == "sms":
        assert len(message.body) <= 70, message.body
        assert message.body.startswith("【云帆科技】")
        if name in MARKETING_SMS:
            assert message.body.endswith("退订回T")


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("name", NAMES)
def test_default_templates_render_with_minimal_params(env, channel, name):
    """Optional params really are optional; missing data (no owner, no contact) does not print None."""
    template = f"messages/{channel}/{name}.txt"
    params = {key: FULL_PARAMS[key] for key in REQUIRED_PARAMS.get(name, set())}
    context = sample_context(**params)
    context["customer"]["owner"] = None
    context["customer"]["contact_person"] = None
    message = render_message(env, template, context)
    assert "None" not in message.body and "星河贸易有限公司" in message.body
    required = {f for f in template_fields(env, template) if f.startswith("params.")}
    assert required == {f"params.{key}" for key in REQUIRED_PARAMS.get(name, set())}


def test_rendered_sms_exact(env):
    message = render_message(env, "messages/sms/offer.txt", sample_context(**FULL_PARAMS))
    assert message == RenderedMessage(
        subject=None,
        body="【云帆科技】王磊您好，本月新品8折优惠，11月30日前有效。详询400-820-1234。退订回T",
    )
    festival = render_message(env, "messages/sms/festival.txt", sample_context(festival="春节"))
    assert "值此春节来临之际" in festival.body  # before the festival and on the day alike


def test_email_subject_convention(env, tmp_path):
    message = render_message(env, "messages/email/festival.txt", sample_context(festival="中秋节"))
    assert message.subject == "云帆科技恭祝您中秋节快乐"
    assert message.body.startswith("尊敬的王磊：")

    write(tmp_path, "a.txt", "subject:  你好，{{ params.who }}  \n\n\n正文第一行\n第二行\n\n")
    write(tmp_path, "b.txt", "没有主题\nsubject: 不是主题\n")
    own = make_environment(tmp_path)
    assert render_message(own, "a.txt", {"params": {"who": "张三"}}) == RenderedMessage("你好，张三", "正文第一行\n第二行")
    assert render_message(own, "b.txt", {}) == RenderedMessage(None, "没有主题\nsubject: 不是主题")


def test_bom_and_crlf_templates(tmp_path):
    (tmp_path / "w.txt").write_bytes("\ufeffsubject: 主题\r\n\r\n正文{{ x }}\r\n".encode("utf-8"))
    message = render_message(make_environment(tmp_path), "w.txt", {"x": 1})
    assert message == RenderedMessage("主题", "正文1")


def test_undefined_variable_names_template_line_and_variable(tmp_path):
    write(tmp_path, "messages/sms/bad.txt", "第一行\n{{ customer.name }}您好，{{ customer.nmae }}\n")
    env = make_environment(tmp_path)
    with pytest.raises(PolicyError) as info:
        render_message(env, "messages/sms/bad.txt", sample_context())
    problem = info.value.problems[0]
    assert problem.code == "template-undefined"
    assert problem.location.file == (tmp_path / "messages/sms/bad.txt").as_posix()
    assert problem.location.line == 2
    assert "messages/sms/bad.txt" in problem.message
    assert "line 2" in problem.message
    assert "customer.nmae" in problem.message


def test_undefined_top_level_variable(tmp_path):
    write(tmp_path, "t.txt", "{{ company.name }}\n{{ shop }}")
    with pytest.raises(PolicyError) as info:
        render_message(make_environment(tmp_path), "t.txt", sample_context())
    problem = info.value.problems[0]
    assert problem.code == "template-undefined"
    assert problem.location.line == 2
    assert "'shop'" in problem.message


@pytest.mark.parametrize("source, expected_zh, expected", [
    ("{{ customer.contact_person|money }}", "生成消息时出错", "TypeError: money filter needs a number, got '…'"),
    ("{{ customer.phone|date('%Y') }}", "生成消息时出错", "ValueError: Invalid isoformat string: '…'"),
    ("{{ params[customer.name] }}", "变量 … 没有定义", "variable '…' is not defined ('dict object' has no attribute '…')"),
])
def test_a_failing_template_names_the_customer_not_their_data(tmp_path, source, expected_zh, expected):
    # The error goes to the console and the log: the customer's name or phone must not.
    write(tmp_path, "t.txt", source)
    with pytest.raises(PolicyError) as info:
        render_message(make_environment(tmp_path), "t.txt", sample_context())
    message = info.value.problems[0].message
    file = tmp_path / "t.txt"
    assert message == (f"模板 {file} 第 1 行（客户 C0001）：{expected_zh} / template {file} line 1 (customer C0001): {expected} "
                       f"(in: {source})")
    assert not any(v in str(info.value) for v in ("王磊", "13812345678", "星河贸易有限公司"))


def test_missing_template(env):
    with pytest.raises(PolicyError) as info:
        render_message(env, "messages/sms/no_such.txt", sample_context())
    problem = info.value.problems[0]
    assert problem.code == "template-missing"
    assert "messages/sms/no_such.txt" in problem.message
    with pytest.raises(PolicyError) as info:
        template_variables(env, "messages/sms/no_such.txt")
    assert info.value.problems[0].code == "template-missing"


def test_syntax_error(tmp_path):
    write(tmp_path, "s.txt", "你好\n\n{% if customer.name %}没有结束\n")
    env = make_environment(tmp_path)
    for call in (lambda: render_message(env, "s.txt", sample_context()), lambda: template_variables(env, "s.txt")):
        with pytest.raises(PolicyError) as info:
            call()
        problem = info.value.problems[0]
        assert problem.code == "template-syntax"
        assert problem.location.file.endswith("s.txt")
        assert problem.location.line is not None
        assert "s.txt" in problem.message


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ customer.__class__ }}",
        "{{ params.update({'x': 1}) }}",  # immutable sandbox: no mutating the data
        "{{ customer.clear() }}",
    ],
)
def test_sandbox_blocks_unsafe_access(tmp_path, source):
    write(tmp_path, "evil.txt", source)
    with pytest.raises(PolicyError) as info:
        render_message(make_environment(tmp_path), "evil.txt", sample_context(x=0))
    problem = info.value.problems[0]
    assert problem.code == "template-unsafe"
    assert problem.location.file.endswith("evil.txt")


def test_sandbox_unsafe_code(tmp_path):
    write(tmp_path, "evil.txt", "{{ ''.__class__.__mro__ }}")
    with pytest.raises(PolicyError) as info:
        render_message(make_environment(tmp_path), "evil.txt", {})
    assert info.value.problems[0].code == "template-unsafe"


def test_filter_error_is_reported(tmp_path):
    write(tmp_path, "f.txt", "{{ params.x|money }}")
    with pytest.raises(PolicyError) as info:
        render_message(make_environment(tmp_path), "f.txt", {"params": {"x": "abc"}})
    assert info.value.problems[0].code == "template-error"
    assert info.value.problems[0].location.line == 1


def test_autoescape_html_only(tmp_path):
    write(tmp_path, "m.txt", "{{ x }}")
    write(tmp_path, "m.html", "<p>{{ x }}</p>")
    env = make_environment(tmp_path)
    assert render_message(env, "m.txt", {"x": "A&B <b>"}).body == "A&B <b>"
    assert render_message(env, "m.html", {"x": "A&B <b>"}).body == "<p>A&amp;B &lt;b&gt;</p>"


def test_filters_exact():
    d = date(2026, 11, 5)
    assert filter_date(d, "%Y年%m月%d日") == "2026年11月05日"
    assert filter_date(d, "%Y年%-m月%-d日") == "2026年11月5日"
    assert filter_date(d) == "2026-11-05"
    assert filter_date(datetime(2026, 11, 5, 9, 30), "%m-%d %H:%M") == "11-05 09:30"
    assert filter_date("2026-11-05", "%-m/%-d") == "11/5"
    assert filter_date(None) == ""

    assert filter_money(1200.5) == "¥1,200.50"
    assert filter_money(1234567) == "¥1,234,567.00"
    assert filter_money(Decimal("0.125")) == "¥0.13"
    assert filter_money(2.675) == "¥2.68"  # half up on the decimal text, not the binary float
    assert filter_money(-5) == "-¥5.00"
    assert filter_money(0) == "¥0.00"
    assert filter_money(None) == ""

    assert filter_mask_phone("13812345678") == "138****5678"
    assert filter_mask_phone("+86 138-1234-5678") == "138****5678"
    assert filter_mask_phone(13812345678) == "138****5678"
    assert filter_mask_phone("021-6123-4567") == "021****4567"
    assert filter_mask_phone("12345") == "*****"
    assert filter_mask_phone(None) == ""


def test_filters_in_templates(tmp_path):
    write(tmp_path, "f.txt", "{{ as_of|date('%Y年%m月%d日') }} {{ params.amount|money }} {{ customer.phone|mask_phone }}")
    message = render_message(make_environment(tmp_path), "f.txt", sample_context(amount=1200.5))
    assert message.body == "2026年11月20日 ¥1,200.50 138****5678"


def test_template_variables_and_fields(tmp_path, env):
    assert template_variables(env, "messages/sms/festival.txt") == {"customer", "company", "params"}
    assert "params.festival" in template_fields(env, "messages/sms/festival.txt")
    write(
        tmp_path,
        "v.txt",
        "{% set n = 1 %}{{ as_of }}{{ params.a }}{{ params['b'] }}{{ params.c|default('x') }}"
        "{{ params.get('d') }}{% if params.e is defined %}{{ params.e }}{% endif %}{{ n }}",
    )
    own = make_environment(tmp_path)
    assert template_variables(own, "v.txt") == {"as_of", "params"}
    assert template_fields(own, "v.txt") == {"as_of", "params.a", "params.b"}


def test_compiled_templates_are_cached(tmp_path):
    path = write(tmp_path, "c.txt", "版本一")
    env = make_environment(tmp_path)
    assert render_message(env, "c.txt", {}).body == "版本一"
    path.write_text("版本二", encoding="utf-8")
    assert render_message(env, "c.txt", {}).body == "版本一"  # one version per run
    assert render_message(make_environment(tmp_path), "c.txt", {}).body == "版本二"


def test_template_reads_lists_the_values_a_text_depends_on(env):
    reads = template_reads(env.parse("为{{ customer.value_tier }}/{{ customer['need_type'] }}，{{ as_of|date }}{{ company.name }}"))
    assert set(reads) == {("customer", "value_tier"), ("customer", "need_type"), ("company", "name"), ("as_of", None)}
    # Not only field values: a computed key, a method, a private name, randomness.
    for source in ("{{ customer[key] }}", "{{ customer.get('owner') }}", "{{ customer.items() }}",
                   "{{ customer._x }}", "{{ ['a', 'b']|random }}", "{{ lipsum(1) }}"):
        assert template_reads(env.parse(source)) is None, source


def test_member_day_gives_its_date_and_no_word_the_send_day_could_make_wrong(env):
    # Generated before the day or on it, and sent the next morning when the run was late (quiet hours):
    # "今天" or "即将到来" was false on one of those days; the date alone is right on each.
    for as_of in (date(2026, 11, 20), date(2026, 11, 22)):  # member day 11-22
        context = sample_context()
        context["as_of"] = as_of
        sms = render_message(env, "messages/sms/member_day.txt", context).body
        assert sms == "【云帆科技】王磊您好，本月会员日是11月22日，会员专享礼遇等您来享。退订回T"
        for channel in CHANNELS:  # (the words with points: test_care)
            body = render_message(env, f"messages/{channel}/member_day.txt", context).body
            assert "11月22日" in body and "今天" not in body and "即将" not in body, body
        email = render_message(env, "messages/email/member_day.txt", context)
        assert email.subject == "云帆科技本月会员日：11月22日" and "本月会员日是2026年11月22日。" in email.body
    # A rule's params.date still wins over the computed day.
    fixed = render_message(env, "messages/wechat/member_day.txt", sample_context(date=date(2026, 11, 28))).body
    assert "本月会员日是11月28日" in fixed


class _Features(dict):
    """A dict subclass with __missing__: ChainMap and the sandbox must still see it as they did."""

    def __missing__(self, key):
        if key == "computed":
            return "from __missing__"
        raise KeyError(key)


@pytest.mark.parametrize("name", ["name", "tier", "owner", "nme", "computed", "get", "items", "maps", "keys",
                                  "parents", "new_child", "copy", "pop", "update", "clear", "fromkeys",
                                  "__class__", "__init__", "__dict__", "_private", 1, None])
def test_mapping_lookup_shortcut_is_the_sandboxs_lookup(name):
    """MessageEnvironment.getattr looks names up on dicts and ChainMaps directly; for every name the
    result is what the sandbox's own lookup gives: the same value, or an undefined saying the same."""
    from collections import ChainMap

    from jinja2 import Undefined

    env = make_environment(TEMPLATES)
    objects = [
        ChainMap({"name": "王磊", "owner": None}, {"tier": "A", "name": "features' name"}),
        ChainMap({"name": "王磊"}, _Features(tier="B")),
        {"name": "云帆科技", "tier": None},
        _Features(name="x"),  # not a plain dict: the sandbox's path
    ]
    for obj in objects:
        def lookup(get):
            try:
                value = get(obj, name)
            except Exception as exc:  # noqa: BLE001 - the error itself is what must match
                return ("raised", type(exc), str(exc))
            if isinstance(value, Undefined):
                try:
                    str(value)
                except Exception as exc:  # noqa: BLE001
                    return ("undefined", type(value), type(exc), str(exc))
            return ("value", value)

        fast = lookup(env.getattr)
        sandbox = lookup(lambda o, n: ImmutableSandboxedEnvironment.getattr(env, o, n))
        if fast[0] == "value" and callable(fast[1]):  # bound methods: equal, not identical
            assert sandbox[0] == "value" and fast[1] == sandbox[1]
        else:
            assert fast == sandbox
