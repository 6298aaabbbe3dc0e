//! The LaTeX commands the tokeniser reads as operators, relations or spacing, and the kind of a
//! command that takes no arguments.

use super::lex::Kind;

const OP_CMDS: &[(&str, &str)] = &[("times", "*"), ("cdot", "*"), ("ast", "*"), ("div", "/")];
const APPROX_CMDS: &[&str] = &["approx", "simeq", "thickapprox", "doteq"];
const REL_CMDS: &[&str] = &[
    "neq",
    "ne",
    "le",
    "leq",
    "ge",
    "geq",
    "lt",
    "gt",
    "equiv",
    "sim",
    "cong",
    "propto",
    "Rightarrow",
    "rightarrow",
    "implies",
    "to",
    "Leftrightarrow",
    "iff",
    "mapsto",
    "leqslant",
    "geqslant",
    "ll",
    "gg",
    "not",
    "in",
    "notin",
    "subset",
    "mid",
    "nmid",
    "pmod",
    "bmod",
    "mod",
    "pm",
    "mp",
];
pub(super) const SPACE_CMDS: &[&str] = &[
    ",",
    ";",
    ":",
    " ",
    "quad",
    "qquad",
    "!",
    "displaystyle",
    "textstyle",
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "limits",
    "nolimits",
    "$",
    "enspace",
    "thinspace",
    "negthinspace",
    "hspace",
    "vspace",
    "phantom",
];
pub(super) const TEXT_CMDS: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "mathrm",
    "mbox",
    "textrm",
    "mathbf",
    "operatorname",
    "textnormal",
    "emph",
    "mathit",
    "textsf",
    "texttt",
];
pub(super) const FRAC_CMDS: &[&str] = &["frac", "dfrac", "tfrac", "cfrac"];
const DOTS_CMDS: &[&str] = &["ldots", "cdots", "dots", "dotsb", "dotsc", "vdots"];

/// The kind and text of a command without arguments.
pub(super) fn classify_command(name: &str) -> (Kind, &str) {
    if let Some((_, op)) = OP_CMDS.iter().find(|(n, _)| *n == name) {
        return (Kind::Op, op);
    }
    if APPROX_CMDS.contains(&name) {
        return (Kind::Approx, "~");
    }
    if REL_CMDS.contains(&name) {
        return (Kind::Rel, name);
    }
    if DOTS_CMDS.contains(&name) {
        return (Kind::Bad, "...");
    }
    // Unknown command: \pi, \sin, \log, \overline, \angle, ...
    (Kind::Cmd, name)
}
