//! The runtime stage of the repository's `Dockerfile`, read as far as the image test needs it:
//! what is copied where (and owned by whom), the environment, the user, the exposed ports and the
//! exec-form entrypoint. Anything else in that stage is refused, so an instruction the test does
//! not reproduce (a `RUN`, a `VOLUME`, a shell-form entrypoint) fails the test instead of being
//! silently left out of what it runs.

use std::collections::BTreeMap;

/// One `COPY` of the runtime stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// `--from=STAGE`; `None` copies from the build context (the repository).
    pub from: Option<String>,
    /// `--chown=UID:GID`.
    pub chown: Option<(u32, u32)>,
    pub sources: Vec<String>,
    pub dest: String,
}

/// The last stage: what the image is at run time.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The base image, with global `ARG` defaults substituted.
    pub base: String,
    pub copies: Vec<Copy>,
    pub env: BTreeMap<String, String>,
    pub user: (u32, u32),
    pub expose: Vec<u16>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub workdir: String,
}

/// Instructions as (KEYWORD, arguments): continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let full = std::mem::take(&mut pending);
                let (keyword, rest) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
            }
        }
    }
    out
}

fn ids(text: &str, what: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = text.split_once(':').unwrap_or((text, text));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(format!(
            "{what} {text}: give numeric UID:GID, so the platform can check that the image runs as non-root"
        )),
    }
}

fn exec_form(keyword: &str, rest: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(rest).map_err(|_| {
        format!(
            "{keyword} {rest}: use the exec form [\"...\"]: the image has no shell, and the process must be PID 1 to get SIGTERM"
        )
    })
}

fn substitute(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in args {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

fn copy(rest: &str) -> Result<Copy, String> {
    let mut from = None;
    let mut chown = None;
    let mut paths = Vec::new();
    for word in rest.split_whitespace() {
        if let Some(stage) = word.strip_prefix("--from=") {
            from = Some(stage.to_owned());
        } else if let Some(owner) = word.strip_prefix("--chown=") {
            chown = Some(ids(owner, "COPY --chown")?);
        } else if word.starts_with("--") {
            return Err(format!("COPY {rest}: the image test does not know {word}"));
        } else {
            paths.push(word.to_owned());
        }
    }
    if rest.trim_start().starts_with('[') || paths.len() < 2 {
        return Err(format!(
            "COPY {rest}: expected COPY [--from=..] [--chown=..] SRC... DEST"
        ));
    }
    let dest = paths.pop().unwrap_or_default();
    Ok(Copy {
        from,
        chown,
        sources: paths,
        dest,
    })
}

fn env(rest: &str, into: &mut BTreeMap<String, String>) {
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.first() {
        Some(first) if !first.contains('=') => {
            into.insert((*first).to_owned(), words[1..].join(" "));
        }
        _ => {
            for word in words {
                if let Some((name, value)) = word.split_once('=') {
                    into.insert(name.to_owned(), value.trim_matches('"').to_owned());
                }
            }
        }
    }
}

/// Reads the last stage of `text`.
pub fn runtime_stage(text: &str) -> Result<Runtime, String> {
    let all = instructions(text);
    let first_from = all.iter().position(|(k, _)| k == "FROM");
    let last_from = all.iter().rposition(|(k, _)| k == "FROM");
    let (Some(first_from), Some(last_from)) = (first_from, last_from) else {
        return Err("no FROM".into());
    };
    // Global ARGs (before the first FROM) may name the base image.
    let mut args = BTreeMap::new();
    for (_, rest) in all[..first_from].iter().filter(|(k, _)| k == "ARG") {
        if let Some((name, value)) = rest.split_once('=') {
            args.insert(name.trim().to_owned(), value.trim().to_owned());
        }
    }
    let from = &all[last_from].1;
    let base = substitute(from.split_whitespace().next().unwrap_or_default(), &args);
    let mut runtime = Runtime {
        base,
        copies: Vec::new(),
        env: BTreeMap::new(),
        user: (0, 0),
        expose: Vec::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        workdir: "/".into(),
    };
    let mut problems = Vec::new();
    for (keyword, rest) in &all[last_from + 1..] {
        let result = match keyword.as_str() {
            "COPY" => copy(rest).map(|c| runtime.copies.push(c)),
            "ENV" => {
                env(rest, &mut runtime.env);
                Ok(())
            }
            "USER" => ids(rest, "USER").map(|ids| runtime.user = ids),
            "EXPOSE" => rest
                .split_whitespace()
                .map(|p| p.trim_end_matches("/tcp").parse::<u16>())
                .collect::<Result<Vec<_>, _>>()
                .map(|ports| runtime.expose.extend(ports))
                .map_err(|_| format!("EXPOSE {rest}: not a list of TCP ports")),
            "ENTRYPOINT" => exec_form(keyword, rest).map(|e| runtime.entrypoint = e),
            "CMD" => exec_form(keyword, rest).map(|c| runtime.cmd = c),
            "WORKDIR" => {
                runtime.workdir = rest.clone();
                Ok(())
            }
            "LABEL" | "ARG" => Ok(()),
            "STOPSIGNAL" if rest == "SIGTERM" => Ok(()),
            other => Err(format!(
                "{other} {rest}: the image test does not reproduce this instruction of the runtime stage"
            )),
        };
        if let Err(problem) = result {
            problems.push(problem);
        }
    }
    if runtime.entrypoint.is_empty() {
        problems.push("the runtime stage has no ENTRYPOINT".into());
    }
    if problems.is_empty() {
        Ok(runtime)
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn reads_a_runtime_stage_and_refuses_what_it_cannot_reproduce() {
    let text = r#"
ARG BASE=example/base:1
FROM rust AS build
RUN make
FROM ${BASE}
# a comment
COPY --from=build /out/a /out/b \
     /usr/bin/
COPY --chown=1:2 conf/ /etc/conf/
ENV A=1 B="two"
ENV LEGACY some value
USER 10:20
EXPOSE 80 443/tcp
ENTRYPOINT ["/usr/bin/a", "run"]
"#;
    let runtime = runtime_stage(text).unwrap();
    assert_eq!(runtime.base, "example/base:1");
    assert_eq!(runtime.copies.len(), 2);
    assert_eq!(runtime.copies[0].sources, ["/out/a", "/out/b"]);
    assert_eq!(runtime.copies[0].dest, "/usr/bin/");
    assert_eq!(runtime.copies[0].from.as_deref(), Some("build"));
    assert_eq!(runtime.copies[1].chown, Some((1, 2)));
    assert_eq!(runtime.env["B"], "two");
    assert_eq!(runtime.env["LEGACY"], "some value");
    assert_eq!(runtime.user, (10, 20));
    assert_eq!(runtime.expose, [80, 443]);
    assert_eq!(runtime.entrypoint, ["/usr/bin/a", "run"]);

    let refused = runtime_stage(
        "FROM x\nRUN echo hi\nUSER nonroot\nENTRYPOINT /usr/bin/a run\nVOLUME /data\n",
    )
    .unwrap_err();
    for needle in ["RUN echo hi", "USER nonroot", "exec form", "VOLUME /data"] {
        assert!(refused.contains(needle), "{needle} not in {refused}");
    }
}
