"""The Chinese wording of ``rejects.xlsx``: for each rejected row, what happened to it, why, and what
to change in the export so that it is read next time.

The people who open rejects.xlsx fix exports in Excel; the reject codes and the English detail (kept
in the 说明 column, and in the decision of every test) are for whoever maintains the engine.
One entry per reject code (docs/inputs.md, section 5). ``{col}`` is the column's header as the
export spells it.
"""
from __future__ import annotations

from .model import Reject

SKIPPED = "整行未读入"

# code -> (原因, 怎么改). The coercion codes (bad-date, ...) say which rule a cell failed; they are the
# code of a skipped row (a required cell) and the ``cause`` of a kept one (an optional cell).
_TEXT: dict[str, tuple[str, str]] = {
    "missing-value": ("必填的「{col}」是空的",
                      "在源系统里补上「{col}」后重新导出；这一行若本不是记录，删掉即可"),
    "bad-date": ("「{col}」不是能读懂的日期或时间",
                 "写成 2024-05-17、2024/5/17 或 2024年5月17日（可带时刻，如 2024-05-17 09:30），或设为 Excel 日期格式"),
    "bad-number": ("「{col}」不是数字",
                   "只写数字，如 1200 或 1,200.50（可带 ¥）；不要写“若干”“约”之类的文字"),
    "bad-id": ("「{col}」不是可用的编号", "填源系统里的编号（字母、数字组成，如 C000123）"),
    "bad-phone": ("「{col}」不是完整的电话号码",
                  "写完整号码：11 位手机号或带区号的座机；Excel 显示成科学计数法（1.38E+10）的，先把该列设为文本格式再导出"),
    "long-number-id": ("「{col}」此编号超过 15 位数字，Excel 已丢失末尾几位（不同的编号会变成同一个）",
                       "请在导出时把「{col}」列设为文本（在 Excel 里先把该列设为“文本”格式，或让源系统导出为文本）后重新导出"),
    "bad-email": ("「{col}」不是邮箱地址", "写成 name@example.com 的形式，或留空"),
    "bad-bool": ("「{col}」不是“是/否”", "写 是 或 否（也可写 1 或 0）"),
    "bad-value": ("「{col}」不是允许的取值", "改成 policies/columns.yaml 里为这一列列出的取值之一（“说明”列列出了它们）"),
    "out-of-range": ("「{col}」超出允许的范围", "核对数值（“说明”列给出允许的范围）"),
    "error-cell": ("「{col}」是 Excel 错误值（如 #N/A、#DIV/0!、#REF!），没有内容可读",
                   "在 Excel 里修正这一格的公式（如 VLOOKUP 找不到时用 IFERROR 给出空白），或填入实际的值，再重新导出"),
    "formula-no-value": ("「{col}」是公式，但文件里没有保存它的计算结果（文件由程序生成，没有在 Excel 里打开保存过）",
                         "用 Excel 打开这个文件、保存后再放进收件箱；或让源系统导出数值而不是公式"),
    "summary-row": ("合计/汇总行，不是一条记录", "无须处理"),
    "not-a-record": ("这一行只填了「{col}」：像是表格下方的标题、备注或计数，不是记录",
                     "若它确是一位客户，补上姓名等其他信息；否则无须处理"),
    "repeated-header": ("重复的表头行（像是两页拼在了一起）", "无须处理"),
    "second-table": ("工作表下方的第二张表（列与上面的表不同），没有读取",
                     "把第二张表放到单独的工作表或文件里，表头用 columns.yaml 认得的列名"),
    "duplicate-id": ("编号重复：同一编号后面又出现了一次，以后面的一行为准",
                     "核对这两行（“说明”列给出另一行的位置）；后面那行若是对的，无须处理，否则删掉它"),
    "duplicate-row": ("与另一个文件中的一行完全相同（导出没有编号列），像是同一份导出存了两份，以后面的一份为准",
                      "删掉重复的那份导出文件；最好导出带记录编号的列"),
    "unknown-customer": ("客户编号不在客户导出里", "把这位客户一并导出到客户表，或核对客户编号是否写错"),
    "rejected-customer": ("这位客户在客户导出里的那一行没有读入，它的记录也就没有读入",
                          "先改好客户导出里这位客户的那一行（位置见“说明”列，原因见本表中那一行），再重新运行"),
}

_UNKNOWN = ("无法使用这一行", "见“说明”列")


def reject_outcome(reject: Reject) -> str:
    """What the run did with the row (处理结果)."""
    if reject.kept_as is not None:
        return f"保留此行，此格按“{'是' if reject.kept_as else '否'}”处理（稳妥起见，见 columns.yaml 的 if_unreadable）"
    if reject.cause == "long-number-id":  # an interaction's or order's id: the row is its own record
        return "保留此行，以“文件!工作表!行号”作为这条记录的编号"
    if reject.cause is not None:
        return "保留此行，此格按空白处理"
    if reject.code in ("duplicate-id", "duplicate-row"):
        return "未读入（以后面的一行为准）"
    return SKIPPED


def reject_reason(reject: Reject) -> tuple[str, str]:
    """(原因, 怎么改) in Chinese for ``reject``."""
    reason, fix = _TEXT.get(reject.cause or reject.code, _UNKNOWN)
    col = reject.column or "这一列"
    return reason.format(col=col), fix.format(col=col)
