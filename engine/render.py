"""Render customer messages (SMS, e-mail, WeChat) from Jinja2 templates, safely and fast.

Templates live under a templates folder (by default ``templates/``) and are named by their path
inside it, e.g. ``messages/sms/birthday.txt``. See ``templates/README.md`` for the variables and
filters available to ops staff.

* Sandboxed: ``ImmutableSandboxedEnvironment`` - a template cannot reach Python internals
  (``''.__class__...``) nor change the data it is given.
* Strict: ``StrictUndefined`` - a misspelt or missing variable is an error naming the template, the
  line and the variable, never a silently empty gap in a message sent to a customer.
* A value that is ``None`` (e.g. no owner recorded) renders as nothing, never as ``None``.
* Autoescaping would be on for ``.html`` / ``.htm`` / ``.xml`` templates; message templates are all
  ``.txt`` (``messages/<channel>/<name>.txt``), plain text with no escaping (no ``&amp;`` in an SMS).
* Compiled templates are cached per environment (rendering runs ~100,000 times a run); templates
  are not re-read from disk during a run.

Subject convention: if the first line of a template starts with ``subject:``, that line (rendered,
without the ``subject:`` prefix, stripped) is the message subject and the rest is the body.
Otherwise the subject is ``None``. E-mail templates have a subject line; SMS and WeChat templates
do not. The body has leading blank lines and trailing whitespace removed.
"""
from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, meta, nodes, select_autoescape
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import Location, PolicyError, Problem, decode_utf8

SUBJECT_PREFIX = re.compile(r"subject\s*[:：]", re.IGNORECASE)

# Context variables every message template may use (see templates/README.md).
CONTEXT_VARIABLES = ("customer", "company", "as_of", "params")


@dataclass(frozen=True)
class RenderedMessage:
    subject: str | None
    body: str


@dataclass(frozen=True)
class _Compiled:
    template: Template
    has_subject: bool
    source_lines: tuple[str, ...]  # for error messages


# --- filters -------------------------------------------------------------------------------------


def filter_date(value: Any, fmt: str = "%Y-%m-%d") -> str:
    """``{{ as_of|date('%Y年%-m月%-d日') }}`` -> ``2026年11月20日``. Besides the usual strftime codes,
    ``%-m`` / ``%-d`` give month / day without a leading zero on every platform. ``None`` -> ``""``.
    An ISO date string (``2026-11-20``) is accepted."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
    if not isinstance(value, date):
        raise TypeError(f"date filter needs a date, got {type(value).__name__}")
    fmt = fmt.replace("%-m", str(value.month)).replace("%-d", str(value.day))
    return value.strftime(fmt)


def filter_money(value: Any, symbol: str = "¥") -> str:
    """``{{ 1200.5|money }}`` -> ``¥1,200.50`` (rounded half up to 2 decimals; negative:
    ``-¥5.00``). ``None`` -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise TypeError("money filter needs a number, got a bool")
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise TypeError(f"money filter needs a number, got {value!r}") from None
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.2f}"


def filter_mask_phone(value: Any) -> str:
    """``{{ '13812345678'|mask_phone }}`` -> ``138****5678``: first 3 and last 4 digits kept.
    Spaces, dashes and a ``+86`` / ``86`` prefix are dropped first. Fewer than 8 digits: all
    masked. ``None`` -> ``""``."""
    if value is None:
        return ""
    digits = re.sub(r"\D", "", str(value))
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "****" + digits[-4:]


FILTERS = {"date": filter_date, "money": filter_money, "mask_phone": filter_mask_phone}


# --- environment ---------------------------------------------------------------------------------


class MessageEnvironment(ImmutableSandboxedEnvironment):
    """The sandboxed environment plus a cache of compiled templates and the folder they come from."""

    def __init__(self, templates_dir: Path) -> None:
        super().__init__(
            # utf-8-sig: templates saved by Windows Notepad start with a BOM.
            loader=FileSystemLoader(str(templates_dir), encoding="utf-8-sig"),
            undefined=StrictUndefined,
            autoescape=select_autoescape(("html", "htm", "xml"), default_for_string=False, default=False),
            keep_trailing_newline=True,
            # {% if %} / {% for %} on their own line leave no blank line behind.
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # a run sees one version of each template
            # A value that is None (e.g. no owner recorded) prints as nothing, never as "None".
            finalize=_none_as_empty,
        )
        self.templates_dir = Path(templates_dir)
        self.filters.update(FILTERS)
        self._compiled: dict[str, _Compiled] = {}

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``customer.name``, ``params.offer``: the sandbox's lookup, without its detour for the
        mappings templates get. For a plain ``dict`` or ``ChainMap`` and a name that is not one of
        the type's attributes, the sandbox's ``getattr(obj, name)`` can only raise AttributeError, and
        it then looks the name up as a key; that is done here directly, with the same result (the
        value, or the same undefined naming the same object). Everything else - ``customer.get``,
        other types - goes through the sandbox unchanged. Saves a raised AttributeError per field
        read, and for a feature a KeyError from the contact fields in front of it."""
        kind = type(obj)
        if type(attribute) is not str:  # (the attr filter can pass anything: the sandbox says what)
            return super().getattr(obj, attribute)
        if kind is ChainMap and attribute not in _CHAINMAP_ATTRIBUTES:
            try:
                for mapping in obj.maps:  # as ChainMap.__getitem__: the first mapping that has it
                    if type(mapping) is dict:
                        if attribute in mapping:
                            return mapping[attribute]
                    else:
                        try:
                            return mapping[attribute]
                        except KeyError:
                            pass
            except (TypeError, LookupError):  # what the sandbox catches around obj[attribute]
                pass
            return self.undefined(obj=obj, name=attribute)
        if kind is dict and attribute not in _DICT_ATTRIBUTES:
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


# What getattr() finds on a plain dict or a ChainMap (methods, ``maps``): those names still go
# through the sandbox's checks.
_DICT_ATTRIBUTES = frozenset(dir(dict))
_CHAINMAP_ATTRIBUTES = frozenset(dir(ChainMap)) | {"maps"}


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def make_environment(templates_dir: Path) -> MessageEnvironment:
    return MessageEnvironment(templates_dir)


def render_message(env: MessageEnvironment, template_name: str, context: Mapping[str, Any]) -> RenderedMessage:
    """Render one message. Raises ``PolicyError`` (codes ``template-missing``, ``template-syntax``,
    ``template-undefined``, ``template-unsafe``, ``template-error``) naming the template and line."""
    compiled = _compiled(env, template_name)
    try:
        text = compiled.template.render(context)
    except Exception as exc:  # undefined variable, sandbox violation, a filter given a wrong type...
        raise _render_problem(env, template_name, compiled, exc, context) from None
    return _split_subject(text, compiled.has_subject)


def without_customer_values(text: str, context: Mapping[str, Any]) -> str:
    """``text`` (an error's own words) with the customer's values blanked out: the error is printed
    to the console and the log, where personal data must not go ("money filter needs a number, got
    '张三'" → "got '…'"). The customer's id says whose record it was."""
    customer = context.get("customer") or {}
    values = {str(v) for v in customer.values() if isinstance(v, (str, date)) and len(str(v)) >= 2}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "…")
    # What a template calls customer is a ChainMap inside: say "customer", as the template does.
    return text.replace("'collections.ChainMap object'", "customer")


def _whose(context: Mapping[str, Any]) -> str:
    cid = (context.get("customer") or {}).get("customer_id")
    return f" (customer {cid})" if cid else ""


def template_variables(env: MessageEnvironment, template_name: str) -> set[str]:
    """Top-level variables the template uses (e.g. ``{"customer", "company", "params"}``)."""
    return meta.find_undeclared_variables(_parse(env, template_name))


def template_fields(env: MessageEnvironment, template_name: str) -> set[str]:
    """The fields the template needs, as dotted paths one level deep: ``customer.name``,
    ``params.festival``; a variable used as a whole (``as_of``) appears by its name.

    A field is optional, and not listed, if the template anywhere reads it with a fallback or a
    check: ``params.get('x')``, ``params.x|default(...)``, ``params.x is defined``. (So
    ``{% if params.get('x') %}...{{ params.x }}{% endif %}`` counts as optional.) Lets a validator
    check that a rule's ``params`` has every key its template needs; rendering still fails on
    anything this misses."""
    tree = _parse(env, template_name)
    top = meta.find_undeclared_variables(tree)

    def dotted(node: nodes.Node) -> str | None:
        """``name.attr`` / ``name['key']`` for an access on a top-level variable, else None."""
        if isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Name):
            if node.node.name not in top:
                return None
            if isinstance(node, nodes.Getattr):
                return f"{node.node.name}.{node.attr}"
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return f"{node.node.name}.{node.arg.value}"
        return None

    optional: set[str] = set()
    for call in tree.find_all(nodes.Call):  # params.get('x', ...)
        func = call.node
        if (
            isinstance(func, nodes.Getattr)
            and func.attr == "get"
            and isinstance(func.node, nodes.Name)
            and call.args
            and isinstance(call.args[0], nodes.Const)
        ):
            optional.add(f"{func.node.name}.{call.args[0].value}")
    for node in tree.find_all(nodes.Filter):  # params.x|default(...)
        if node.name in ("default", "d") and node.node is not None and (path := dotted(node.node)):
            optional.add(path)
    for node in tree.find_all(nodes.Test):  # params.x is defined
        if node.name in ("defined", "undefined") and (path := dotted(node.node)):
            optional.add(path)

    fields: set[str] = set()
    bases: set[int] = set()  # Name nodes that are the base of an attribute access
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node.node, nodes.Name) and node.node.name in top:
            bases.add(id(node.node))
            if isinstance(node, nodes.Getattr) and node.attr == "get":
                continue  # the method itself, handled above
            fields.add(dotted(node) or node.node.name)  # computed key: the whole variable
    for node in tree.find_all(nodes.Name):
        if node.name in top and node.ctx == "load" and id(node) not in bases:
            fields.add(node.name)
    return fields - optional


# Names on the mappings templates get (``customer.get``, ``customer.items``): reading one reaches a
# method, not a field, so the text may depend on more than the field values.
_MAPPING_NAMES = frozenset(dir(dict)) | frozenset(dir(ChainMap))
# Output that differs between two renders of the same values.
_RANDOM_FILTERS = frozenset({"random"})
_RANDOM_GLOBALS = frozenset({"lipsum"})


def template_reads(tree: nodes.Template) -> tuple[tuple[str, str | None], ...] | None:
    """What a parsed template reads from its context: ``("customer", "name")`` for ``customer.name`` or
    ``customer['name']``, ``("as_of", None)`` for a variable used as a whole. Equal values give equal
    text, so callers may reuse an earlier rendering. None when that is not so: a computed key
    (``customer[k]``), a method or private name, a random filter."""
    top = meta.find_undeclared_variables(tree)
    if (any(f.name in _RANDOM_FILTERS for f in tree.find_all(nodes.Filter))
            or any(n.name in _RANDOM_GLOBALS for n in tree.find_all(nodes.Name))):
        return None
    reads: dict[tuple[str, str | None], None] = {}
    bases: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if not (isinstance(node.node, nodes.Name) and node.node.name in top):
            continue
        bases.add(id(node.node))
        if isinstance(node, nodes.Getattr):
            field = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            field = node.arg.value
        else:
            return None
        if field.startswith("_") or field in _MAPPING_NAMES:
            return None
        reads[(node.node.name, field)] = None
    for node in tree.find_all(nodes.Name):
        if node.name in top and node.ctx == "load" and id(node) not in bases:
            reads[(node.name, None)] = None
    return tuple(reads)


# --- internals -----------------------------------------------------------------------------------


def _template_file(env: MessageEnvironment, template_name: str) -> str:
    base = getattr(env, "templates_dir", None)
    return (Path(base) / template_name).as_posix() if base is not None else template_name


def _compiled(env: MessageEnvironment, template_name: str) -> _Compiled:
    cache = getattr(env, "_compiled", None)
    if cache is not None and template_name in cache:
        return cache[template_name]
    source = template_source(env, template_name)
    try:
        template = env.get_template(template_name)
    except TemplateSyntaxError as exc:
        raise _syntax_problem(env, template_name, exc) from None
    except TemplateNotFound as exc:  # e.g. a missing {% include %}
        raise _missing_problem(env, exc.name or template_name) from None
    compiled = _Compiled(
        template=template,
        has_subject=bool(SUBJECT_PREFIX.match(source)),
        source_lines=tuple(source.splitlines()),
    )
    if cache is not None:
        cache[template_name] = compiled
    return compiled


def template_source(env: MessageEnvironment, template_name: str) -> str:
    """The template's text. A missing file is ``template-missing``; a file not saved as UTF-8 (e.g.
    Notepad's "ANSI", GBK on Chinese Windows) is ``not-utf8`` naming its line, never a traceback."""
    if env.loader is None:
        raise _missing_problem(env, template_name)
    try:
        source, _filename, _uptodate = env.loader.get_source(env, template_name)
    except TemplateNotFound:
        raise _missing_problem(env, template_name) from None
    except UnicodeDecodeError:
        file = _template_file(env, template_name)
        decode_utf8(Path(file).read_bytes(), file)  # raises not-utf8 with the line of the bad byte
        raise
    return source


def _parse(env: MessageEnvironment, template_name: str) -> nodes.Template:
    source = template_source(env, template_name)
    try:
        return env.parse(source, template_name, _template_file(env, template_name))
    except TemplateSyntaxError as exc:
        raise _syntax_problem(env, template_name, exc) from None


def _missing_problem(env: MessageEnvironment, template_name: str) -> PolicyError:
    file = _template_file(env, template_name)
    base = getattr(env, "templates_dir", None)
    return PolicyError(
        Problem(
            code="template-missing",
            message=f"消息模板 {file} 不存在 / message template {file} does not exist",
            location=Location(file=file),
            fix=f"新建这个模板，或改正模板名称（名称相对于 {base}） / "
                f"create it, or correct the template name (names are relative to {base})",
        )
    )


def _syntax_problem(env: MessageEnvironment, template_name: str, exc: TemplateSyntaxError) -> PolicyError:
    file = _template_file(env, exc.name or template_name)
    return PolicyError(template_syntax_problem(exc, Location(file=file, line=exc.lineno), file))


# Jinja's words for the usual slips → what happened, in Chinese, and the fix (bilingual). Matched in order.
_BLOCK_END = re.compile(r"The innermost block that needs to be closed is '(\w+)'")
_UNKNOWN_TAG = re.compile(r"^Encountered unknown tag '(\w+)'")
_UNEXPECTED_CHAR = re.compile(r"^unexpected char (['\"])(.)\1")
_CLOSERS = {"if": "endif", "for": "endfor", "macro": "endmacro", "call": "endcall", "filter": "endfilter",
            "set": "endset", "block": "endblock", "raw": "endraw", "with": "endwith", "autoescape": "endautoescape"}
_FULL_WIDTH = "（）“”‘’，：；｛｝【】％｜"


def _explain_syntax(message: str) -> tuple[str, str]:
    """(Chinese explanation, bilingual fix) for a Jinja syntax error message."""
    inner = _BLOCK_END.search(message)
    tag = _UNKNOWN_TAG.match(message)
    char = _UNEXPECTED_CHAR.match(message)
    if message.startswith("Unexpected end of template") and inner:
        block, end = inner.group(1), _CLOSERS.get(inner.group(1), "end" + inner.group(1))
        return (f"{{% {block} %}} 没有对应的 {{% {end} %}}，模板到结尾都没有结束它",
                f"在 {block} 块应结束的地方加上 {{% {end} %}} / add {{% {end} %}} where the {block} block should end")
    if tag and tag.group(1) in ("endif", "endfor", "else", "elif") and inner:
        block, end = inner.group(1), _CLOSERS.get(inner.group(1), "end" + inner.group(1))
        return (f"{{% {tag.group(1)} %}} 放错了位置：这里还在 {block} 块里，应先用 {{% {end} %}} 结束它",
                "检查 if / for 的配对和先后顺序 / check that every if and for is closed, innermost first")
    if tag and tag.group(1) in ("endif", "endfor", "else", "elif"):
        opener = "for" if tag.group(1) == "endfor" else "if"
        return (f"{{% {tag.group(1)} %}} 前面没有对应的 {{% {opener} … %}}",
                f"删掉这个 {{% {tag.group(1)} %}}，或在前面补上 {{% {opener} … %}} / "
                f"remove this {{% {tag.group(1)} %}} or add the {{% {opener} … %}} it closes")
    if tag:
        return (f"不认识的标签 {{% {tag.group(1)} %}}（{{% %}} 里只能写 if、elif、else、endif、for、endfor、set 等）",
                "改正拼写；要输出变量请用 {{ 变量 }} 而不是 {% 变量 %} / correct the spelling; "
                "to print a value write {{ name }}, not {% name %}")
    if message.startswith("unexpected '}'") or message.startswith("unexpected '%'"):
        return ("括号没有配对：{{ 要用 }} 结束，{% 要用 %} 结束（可能少写了一个 }，或两种括号混用了）",
                "把这一行的 {{ … } 补成 {{ … }}，{% … } 补成 {% … %} / close {{ with }} and {% with %} on this line")
    if "expected token 'end of print statement'" in message or "expected 'end of print statement'" in message:
        return ("{{ … }} 没有用 }} 结束（在这一行或上面几行），或 }} 前面多了内容",
                "在变量后面加上 }}，一对 {{ }} 里只写一个变量或表达式 / end the value with }}; "
                "write one variable or expression inside each {{ }}")
    if "expected token 'end of statement block'" in message or "expected 'end of statement block'" in message:
        return ("{% … %} 没有用 %} 结束（在这一行或上面几行），或 %} 前面多了内容",
                "在标签后面加上 %}，例如 {% if customer.name %} / end the tag with %}, e.g. {% if customer.name %}")
    if message.startswith("Missing end of comment tag"):
        return "注释 {# 没有用 #} 结束", "在注释后面加上 #} / end the comment with #}"
    if char and char.group(2) in _FULL_WIDTH:
        return (f"{{{{ }}}} 或 {{% %}} 里有全角字符 {char.group(2)}",
                "括号、引号、逗号等改用半角（英文输入法）字符 / type brackets, quotes and commas in half width (English input)")
    if char and char.group(2) in "'\"":
        return ("引号没有配对", "给文字两边都加上同样的引号，例如 '您好' / quote text on both sides, e.g. '您好'")
    return ("模板写法有误", "对照 templates/README.md 的写法改正这一行 / correct this line as shown in templates/README.md")


def template_syntax_problem(exc: TemplateSyntaxError, location: Location, file: str,
                            what: tuple[str, str] | None = None) -> Problem:
    """A Jinja syntax error for ops staff: the template ``file`` and line, what is wrong in Chinese,
    Jinja's own words after " / ", the line as written and a fix. ``what``: how to name a text that
    is not a template file, in Chinese and English (a task's title in a policy file)."""
    english = exc.message or ""
    chinese, fix = _explain_syntax(english)
    line = exc.lineno
    written = ""
    lines = (exc.source or "").splitlines()
    if line and 0 < line <= len(lines) and lines[line - 1].strip() and not english.lower().startswith("unexpected end"):
        written = lines[line - 1].strip()
        written = f"“{written[:77] + '...' if len(written) > 80 else written}”"
    zh, en = what or (f"模板 {file}", f"template {file}")
    if what is None or len(lines) > 1:  # a one-line task title needs no line number
        zh, en = f"{zh} 第 {line} 行", f"{en} line {line}"
    return Problem(
        code="template-syntax",
        message=f"{zh}{written}：{chinese} / {en}: {english}",
        location=location,
        fix=fix,
    )


_UNDEFINED_NAME = (
    re.compile(r"^'([^']+)' is undefined"),
    re.compile(r"has no (?:attribute|element) '([^']+)'"),
    re.compile(r"access to attribute '([^']+)'"),
)


def _render_problem(env: MessageEnvironment, template_name: str, compiled: _Compiled, exc: Exception,
                    context: Mapping[str, Any]) -> PolicyError:
    file = _template_file(env, template_name)
    line = template_error_line(exc, compiled.template.filename)
    where = f"template {file}" + (f" line {line}" if line else "") + _whose(context)
    cid = (context.get("customer") or {}).get("customer_id")
    where_zh = f"模板 {file}" + (f" 第 {line} 行" if line else "") + (f"（客户 {cid}）" if cid else "")
    text = without_customer_values(str(exc), context)
    snippet = ""
    if line and 0 < line <= len(compiled.source_lines):
        snippet = compiled.source_lines[line - 1].strip()
        if len(snippet) > 80:
            snippet = snippet[:77] + "..."
        snippet = f" (in: {snippet})"
    if isinstance(exc, SecurityError):
        code = "template-unsafe"
        message = f"{where_zh}：消息模板里不允许这样写 / {where}: not allowed in a message template: {text}{snippet}"
        fix = ("只用 templates/README.md 里列出的消息变量和过滤器 / "
               "use only the message variables and filters listed in templates/README.md")
    elif isinstance(exc, UndefinedError):
        code = "template-undefined"
        name = next((m.group(1) for p in _UNDEFINED_NAME if (m := p.search(text))), None)
        if name and snippet:
            # Show the full path as written, e.g. customer.nme rather than nme.
            dotted = re.search(rf"([A-Za-z_]\w*)\s*\.\s*{re.escape(name)}\b", snippet)
            if dotted:
                name = f"{dotted.group(1)}.{name}"
        variable = f"variable {name!r}" if name else "a variable"
        variable_zh = f"变量 {name} " if name else "有变量"
        message = f"{where_zh}：{variable_zh}没有定义 / {where}: {variable} is not defined ({text}){snippet}"
        fix = (
            f"检查拼写；消息模板能用 {', '.join(CONTEXT_VARIABLES)}；规则自己的值在 params 下，如 params.festival / "
            f"check the spelling; message templates get {', '.join(CONTEXT_VARIABLES)}; "
            "a rule's own values are under params, e.g. params.festival"
        )
    else:
        code = "template-error"
        message = f"{where_zh}：生成消息时出错 / {where}: {type(exc).__name__}: {text}{snippet}"
        fix = None
    return PolicyError(Problem(code=code, message=message, location=Location(file=file, line=line), fix=fix))


def template_error_line(exc: BaseException, filename: str | None) -> int | None:
    """The template line of the error: Jinja rewrites tracebacks so that template code shows up as
    frames of the template file; the innermost such frame is where it failed."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _split_subject(text: str, has_subject: bool) -> RenderedMessage:
    subject = None
    if has_subject:
        first, _, text = text.partition("\n")
        match = SUBJECT_PREFIX.match(first)
        subject = first[match.end():].strip() if match else first.strip()
    return RenderedMessage(subject=subject, body=text.lstrip("\n").rstrip())
