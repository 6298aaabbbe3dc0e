//! Environment interpolation on the raw text, before YAML parsing (as Vector does):
//! `${VAR}`, `${VAR:-default}`, `${VAR:?message}`, and `$$` for a literal `$`. Comment lines
//! are left alone. A value containing a newline is refused: it could inject configuration.
//! Substitutions are recorded so problems found later still point into the file as written.

use super::problem::Problem;

/// One `${...}` replaced on a line: its columns (1-based) in the output and in the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Substitution {
    line: usize,
    out_start: usize,
    out_len: usize,
    in_len: usize,
}

#[derive(Debug, Clone)]
pub struct Interpolated {
    pub text: String,
    /// Problems of the interpolation itself, already located in the original text.
    pub problems: Vec<Problem>,
    subs: Vec<Substitution>,
}

impl Interpolated {
    /// Moves a problem located in the interpolated text back to the original text.
    pub fn map_back(&self, mut p: Problem) -> Problem {
        let mut shift: isize = 0;
        for s in self.subs.iter().filter(|s| s.line == p.line) {
            if p.col >= s.out_start + s.out_len {
                shift += s.in_len as isize - s.out_len as isize;
            } else if p.col >= s.out_start {
                // inside a substituted value: point at its `${`
                p.col = s.out_start;
                break;
            }
        }
        p.col = (p.col as isize + shift).max(1) as usize;
        p
    }
}

pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Interpolated {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut subs = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut out_col = 1; // column (1-based, chars) of the next output char on this line
        while i < chars.len() {
            let c = chars[i];
            if c == '$' && chars.get(i + 1) == Some(&'$') {
                out.push('$');
                subs.push(Substitution {
                    line: number,
                    out_start: out_col,
                    out_len: 1,
                    in_len: 2,
                });
                out_col += 1;
                i += 2;
                continue;
            }
            if c != '$' || chars.get(i + 1) != Some(&'{') {
                out.push(c);
                out_col += 1;
                i += 1;
                continue;
            }
            let col = i + 1;
            let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                problems.push(Problem::new(number, col, "unterminated `${`: expected `}` on the same line (write `$$` for a literal `$`)"));
                out.extend(&chars[i..]);
                break;
            };
            let body: String = chars[i + 2..i + 2 + close].iter().collect();
            let in_len = close + 3;
            let (name, op, arg) = match body.find([':', '-', '?']) {
                Some(k) if body[k..].starts_with(":-") => (&body[..k], Some('-'), &body[k + 2..]),
                Some(k) if body[k..].starts_with(":?") => (&body[..k], Some('?'), &body[k + 2..]),
                Some(_) => (body.as_str(), Some('!'), ""),
                None => (body.as_str(), None, ""),
            };
            let valid_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let value = if op == Some('!') || !valid_name {
                problems.push(Problem::new(number, col, format!("bad interpolation `${{{body}}}`: expected ${{VAR}}, ${{VAR:-default}} or ${{VAR:?message}}")));
                String::new()
            } else {
                match (env(name).filter(|v| !v.is_empty()), op) {
                    (Some(v), _) => v,
                    (None, Some('-')) => arg.to_string(),
                    (None, Some('?')) => {
                        problems.push(Problem::new(
                            number,
                            col,
                            format!("environment variable {name} is not set: {arg}"),
                        ));
                        String::new()
                    }
                    (None, _) => {
                        problems.push(Problem::new(number, col, format!("environment variable {name} is not set (write ${{{name}:-default}} to give a default)")));
                        String::new()
                    }
                }
            };
            if value.contains(['\n', '\r']) {
                problems.push(Problem::new(number, col, format!("environment variable {name} contains a newline: refused, since it could inject configuration")));
            }
            let out_len = value.chars().count();
            subs.push(Substitution {
                line: number,
                out_start: out_col,
                out_len,
                in_len,
            });
            out.push_str(&value);
            out_col += out_len;
            i += in_len;
        }
    }
    Interpolated {
        text: out,
        problems,
        subs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OUT" => Some("out/run1".into()),
            "EVIL" => Some("x\nsinks: {}".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let r = interpolate(
            "a: ${OUT}\nb: ${NOPE:-d}\nc: $$HOME\n# ${NOPE:?skipped in comments}\n",
            &env,
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(
            r.text,
            "a: out/run1\nb: d\nc: $HOME\n# ${NOPE:?skipped in comments}\n"
        );
    }

    #[test]
    fn refuses_missing_and_newlines() {
        let r = interpolate(
            "a: ${NOPE:?set it}\nb: ${EVIL}\nc: ${NOPE}\nd: ${OOPS\n",
            &env,
        );
        let messages: Vec<String> = r
            .problems
            .iter()
            .map(|p| format!("{}:{} {}", p.line, p.col, p.message))
            .collect();
        assert_eq!(
            messages,
            [
                "1:4 environment variable NOPE is not set: set it",
                "2:4 environment variable EVIL contains a newline: refused, since it could inject configuration",
                "3:4 environment variable NOPE is not set (write ${NOPE:-default} to give a default)",
                "4:4 unterminated `${`: expected `}` on the same line (write `$$` for a literal `$`)",
            ]
        );
    }

    #[test]
    fn maps_columns_back() {
        let r = interpolate("x: ${OUT} y: z\n", &env);
        // "x: out/run1 y: z": `y` is at column 13 in the output, 11 in the original
        assert_eq!(r.map_back(Problem::new(1, 13, "m")).col, 11);
        assert_eq!(r.map_back(Problem::new(1, 6, "m")).col, 4);
        assert_eq!(r.map_back(Problem::new(1, 2, "m")).col, 2);
    }
}
