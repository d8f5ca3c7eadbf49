//! `golden git-setup`: registers golden with a repository as the diff textconv (`golden show`)
//! and the merge driver (`golden merge`) of the backup file, so that `git diff`, `git log -p`
//! and `git merge` work on records rather than on JSON text.
//!
//! Two places, as git splits them: the attributes that name the driver for a path go in the
//! `.gitattributes` at the root of the work tree (committed, shared with the team); what the
//! drivers run goes in the repository's own config (`git config --local`: git never takes a
//! command to run from a committed file, so each clone runs the setup once). Global and
//! system config are never touched. Each step first reads what is there and writes only what
//! differs, so a second run changes nothing and says so; the user's other lines of
//! `.gitattributes` are kept as they are, and the file is replaced atomically.
//!
//! The drivers run golden through the shell (git runs them with `sh -c`): the executable's
//! path is quoted for sh, so a path with spaces or quotes runs as it is.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use color_eyre::eyre::{eyre, WrapErr};
use color_eyre::Result;
use serde::Serialize;

use super::Git;
use crate::error::invalid_input;

/// The name of both drivers in attributes and config: `diff=golden`, `merge.golden.driver`.
pub const DRIVER: &str = "golden";

/// The attributes golden gives the backup's path, in the order written.
const ATTRIBUTES: [(&str, &str); 2] = [("diff", DRIVER), ("merge", DRIVER)];

/// The description git shows of the merge driver.
pub const MERGE_DRIVER_NAME: &str = "golden three-way merge by id";

/// What the setup found and changed.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The root of the work tree.
    pub repository: PathBuf,
    /// How the drivers run golden: shell words, an absolute path or a command name.
    pub command: String,
    /// The lines of `.gitattributes`, one per backup path.
    pub attributes: Vec<AttributeLine>,
    /// The entries of the repository's config.
    pub config: Vec<ConfigEntry>,
    /// False when everything was already set up.
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributeLine {
    /// The backup's path, from the root of the work tree.
    pub path: String,
    /// The line as it now reads.
    pub line: String,
    /// What was there before: none for a line golden added, the old line for one it
    /// completed, the same line when it was already right.
    pub was: Option<String>,
}

impl AttributeLine {
    pub fn changed(&self) -> bool {
        self.was.as_deref() != Some(self.line.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value: String,
    /// The values it had before (none when it was not set).
    pub was: Vec<String>,
    pub changed: bool,
}

/// Sets up the repository that `folder` is in for the backup files `files` (relative to
/// `folder`), with drivers that run `golden_command` (shell words).
pub fn set_up(folder: &Path, files: &[PathBuf], golden_command: &str) -> Result<Report> {
    let toplevel = Git::in_folder(folder).toplevel()?;
    let git = Git::in_folder(&toplevel);
    let mut paths: Vec<String> = Vec::new();
    for file in files {
        let path = path_in_repository(folder, &toplevel, file)?;
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    // Read and edited before anything is written: a `.gitattributes` golden cannot edit stops
    // the setup with nothing changed.
    let attributes = AttributesEdit::of(&toplevel, &paths)?;
    let mut config = Vec::new();
    for (key, value) in config_entries(golden_command) {
        config.push(set_config(&git, key, &value)?);
    }
    let attributes = attributes.write()?;
    check_attributes_apply(&git, &paths)?;
    let changed =
        config.iter().any(|entry| entry.changed) || attributes.iter().any(AttributeLine::changed);
    Ok(Report {
        repository: toplevel,
        command: golden_command.to_string(),
        attributes,
        config,
        changed,
    })
}

/// The config entries of both drivers, running `golden` (shell words).
pub fn config_entries(golden: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "diff.golden.textconv",
            format!(
                "{golden} show --raw-if-unreadable --layout {}",
                crate::show::LAYOUT
            ),
        ),
        // git keeps each blob's rendering (refs/notes/textconv/golden), keyed by the blob and
        // checked against the textconv command line, which names the layout: `git log -p`
        // renders each version once.
        ("diff.golden.cachetextconv", "true".to_string()),
        ("merge.golden.name", MERGE_DRIVER_NAME.to_string()),
        // git expands `%` placeholders in this line: a `%` of golden's path is doubled.
        (
            "merge.golden.driver",
            format!("{} merge %O %A %B --name %P", golden.replace('%', "%%")),
        ),
        // In a criss-cross merge git first merges the merge bases with the driver; a conflict
        // there would give golden a BASE full of markers, and the outer merge would stop. The
        // binary driver keeps the common ancestor as the virtual base instead: the outer
        // merge then names the real conflicts.
        ("merge.golden.recursive", "binary".to_string()),
    ]
}

/// The running executable as one shell word, for drivers that run it by its absolute path.
pub fn current_exe_command() -> Result<String> {
    let exe = std::env::current_exe()
        .wrap_err("finding golden's own executable, for the drivers to run")?;
    let text = exe.to_str().ok_or_else(|| {
        invalid_input(format!(
            "golden's executable path {} is not UTF-8, which git's config cannot hold as a \
             command: give --command NAME (golden on PATH)",
            exe.display()
        ))
    })?;
    Ok(shell_word(text).into_owned())
}

/// `text` as one word for sh: bare when it holds nothing sh treats specially, else in single
/// quotes (a `'` inside written `'\''`).
pub fn shell_word(text: &str) -> std::borrow::Cow<'_, str> {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if bare {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(format!("'{}'", text.replace('\'', r"'\''")))
    }
}

/// `file` (relative to `folder`) as a path from the root of the work tree, with `/`. The file
/// need not exist; its last component is taken as written (a symlink is the path git tracks),
/// its folder as the system resolves it.
fn path_in_repository(folder: &Path, toplevel: &Path, file: &Path) -> Result<String> {
    let shown = file.display();
    let absolute = folder.join(file);
    if absolute.is_dir() {
        return Err(invalid_input(format!(
            "{shown} is a folder: give --file the path of the backup file"
        )));
    }
    let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return Err(invalid_input(format!(
            "{shown} does not name a file: give --file the path of the backup file"
        )));
    };
    let parent = crate::paths::canonical_even_if_missing(parent)
        .ok_or_else(|| invalid_input(format!("the folder of {shown} cannot be resolved")))?;
    let toplevel = fs::canonicalize(toplevel)
        .wrap_err_with(|| format!("resolving the repository's root {}", toplevel.display()))?;
    let full = parent.join(name);
    let relative = full.strip_prefix(&toplevel).map_err(|_| {
        invalid_input(format!(
            "{shown} is outside the repository at {}: give --file a path inside it",
            toplevel.display()
        ))
    })?;
    let parts = relative
        .components()
        .map(|part| {
            part.as_os_str().to_str().ok_or_else(|| {
                invalid_input(format!(
                    "{shown} is not UTF-8: golden writes .gitattributes as text"
                ))
            })
        })
        .collect::<Result<Vec<&str>>>()?;
    if parts.is_empty() {
        return Err(invalid_input(format!(
            "{shown} is the repository's root, not a file: give --file the backup file's path"
        )));
    }
    Ok(parts.join("/"))
}

/// Sets one config entry of the repository to `value`, unless it holds exactly that.
fn set_config(git: &Git, key: &str, value: &str) -> Result<ConfigEntry> {
    let step = format!("reading {key} from the repository's config");
    let (shown, output) = git.output(&step, ["config", "--local", "-z", "--get-all", key])?;
    let was: Vec<String> = match output.status.code() {
        Some(0) => String::from_utf8_lossy(&output.stdout)
            .split_terminator('\0')
            .map(str::to_string)
            .collect(),
        // `git config --get` exits 1 when the key is not set.
        Some(1) => Vec::new(),
        _ => {
            return Err(eyre!(
                "{step}: `{shown}` failed ({}): {}; fix the repository's config (.git/config), \
                 then run golden git-setup again",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    let changed = was.len() != 1 || was[0] != value;
    if changed {
        git.run(
            &format!("setting {key} in the repository's config"),
            ["config", "--local", "--replace-all", key, value],
        )?;
    }
    Ok(ConfigEntry {
        key: key.to_string(),
        value: value.to_string(),
        was,
        changed,
    })
}

/// The `.gitattributes` at the root of the work tree, with golden's attributes for the
/// backup paths, ready to be written.
struct AttributesEdit {
    shown: PathBuf,
    /// Where the bytes go (the file a symlink names).
    target: PathBuf,
    new_file: bool,
    text: String,
    lines: Vec<AttributeLine>,
}

impl AttributesEdit {
    /// Gives each of `paths` golden's attributes in the `.gitattributes` at `toplevel`,
    /// keeping every other line.
    fn of(toplevel: &Path, paths: &[String]) -> Result<AttributesEdit> {
        let shown = toplevel.join(".gitattributes");
        let target = crate::paths::output(&shown, ".gitattributes", &[])?.target;
        let existing = match fs::read(&target) {
            Ok(bytes) => Some(String::from_utf8(bytes).map_err(|_| {
                invalid_input(format!(
                    "{} is not UTF-8 text, which golden edits only as text; nothing was changed: \
                     add the lines by hand: {}",
                    shown.display(),
                    paths
                        .iter()
                        .map(|path| line_for(path))
                        .collect::<Vec<_>>()
                        .join(" / ")
                ))
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(eyre!(
                    "reading {}: {e}; nothing was changed",
                    shown.display()
                ))
            }
        };
        let (text, lines) = with_golden_attributes(existing.as_deref().unwrap_or(""), paths);
        Ok(AttributesEdit {
            shown,
            target,
            new_file: existing.is_none(),
            text,
            lines,
        })
    }

    /// Writes the file (atomically) if a line changed.
    fn write(self) -> Result<Vec<AttributeLine>> {
        if self.lines.iter().any(AttributeLine::changed) {
            write_atomically(&self.target, self.text.as_bytes(), self.new_file).wrap_err_with(
                || {
                    format!(
                        "writing {}; it was not changed (the repository config was set): run \
                         golden git-setup again once it can be written",
                        self.shown.display()
                    )
                },
            )?;
        }
        Ok(self.lines)
    }
}

/// Replaces `dest` with `bytes` through a temp file beside it. A new `.gitattributes` is
/// readable by all (0644), as files git checks out are; it holds no data.
fn write_atomically(dest: &Path, bytes: &[u8], new: bool) -> io::Result<()> {
    let mut temp = crate::atomic::temp_file_beside(dest)?;
    temp.write_all(bytes)?;
    temp.flush()?;
    #[cfg(unix)]
    if new {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    crate::atomic::persist(temp, dest)
}

/// Fails unless git now gives each path golden's attributes: a `.gitattributes` of a
/// subfolder or `.git/info/attributes` may override the root's.
fn check_attributes_apply(git: &Git, paths: &[String]) -> Result<()> {
    let mut args = vec!["check-attr", "-z", "diff", "merge", "--"];
    args.extend(paths.iter().map(String::as_str));
    let output = git.run("checking the attributes git now gives the backup", args)?;
    let output = String::from_utf8_lossy(&output);
    let fields: Vec<&str> = output.split_terminator('\0').collect();
    for triple in fields.chunks(3) {
        let [path, attribute, value] = triple else {
            return Err(eyre!(
                "checking the attributes: git check-attr printed {output:?}, not path, attribute, value"
            ));
        };
        if *value != DRIVER {
            return Err(eyre!(
                "{path} has {attribute}: {value} although .gitattributes at the root gives it \
                 {attribute}={DRIVER}: a .gitattributes in one of its folders or \
                 .git/info/attributes overrides it; remove {attribute} there for this path, then \
                 run golden git-setup again"
            ));
        }
    }
    Ok(())
}

/// The line golden adds for `path`.
fn line_for(path: &str) -> String {
    let attributes: Vec<String> = ATTRIBUTES
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("{} {}", written_pattern(path), attributes.join(" "))
}

/// The `.gitattributes` text `text` in which every path of `paths` has golden's attributes:
/// the last line whose pattern is that path gets them (its other attributes kept, another
/// `diff` or `merge` of it replaced); a path without a line gets a new line at the end.
/// Every other line is kept byte for byte.
pub fn with_golden_attributes(text: &str, paths: &[String]) -> (String, Vec<AttributeLine>) {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let mut report = Vec::new();
    for path in paths {
        let pattern = glob_escaped(path);
        let found = lines.iter().rposition(|line| {
            parse_line(line).is_some_and(|parsed| same_pattern(&parsed.pattern, &pattern))
        });
        let Some(index) = found else {
            if let Some(last) = lines.last_mut().filter(|last| !last.ends_with('\n')) {
                last.push_str(newline);
            }
            let line = line_for(path);
            lines.push(format!("{line}{newline}"));
            report.push(AttributeLine {
                path: path.clone(),
                line,
                was: None,
            });
            continue;
        };
        let (body, ending) = split_ending(&lines[index]);
        let was = body.to_string();
        let line = match parse_line(body) {
            Some(parsed) if !parsed.has_golden_attributes() => parsed.with_golden_attributes(),
            _ => was.clone(),
        };
        lines[index] = format!("{line}{ending}");
        report.push(AttributeLine {
            path: path.clone(),
            line,
            was: Some(was),
        });
    }
    (lines.concat(), report)
}

/// A line of `.gitattributes` that is not blank nor a comment.
struct ParsedLine<'a> {
    /// What precedes the attributes: leading blanks and the pattern as written.
    lead: &'a str,
    /// The pattern, unquoted.
    pattern: String,
    attributes: Vec<&'a str>,
}

impl ParsedLine<'_> {
    /// The attribute's name in `diff`, `-diff`, `!diff`, `diff=x`.
    fn name_of(attribute: &str) -> &str {
        let bare = attribute.trim_start_matches(['-', '!']);
        bare.split('=').next().unwrap_or(bare)
    }

    /// Whether each of golden's attributes is set once, to golden's driver.
    fn has_golden_attributes(&self) -> bool {
        ATTRIBUTES.iter().all(|(name, value)| {
            let setting: Vec<&&str> = self
                .attributes
                .iter()
                .filter(|attribute| Self::name_of(attribute) == *name)
                .collect();
            setting.len() == 1 && *setting[0] == format!("{name}={value}")
        })
    }

    /// The line with golden's attributes last (later attributes of a line win in git), every
    /// other attribute kept in its place.
    fn with_golden_attributes(&self) -> String {
        let mut line = self.lead.to_string();
        for attribute in &self.attributes {
            if !ATTRIBUTES
                .iter()
                .any(|(name, _)| Self::name_of(attribute) == *name)
            {
                line.push(' ');
                line.push_str(attribute);
            }
        }
        for (name, value) in ATTRIBUTES {
            line.push_str(&format!(" {name}={value}"));
        }
        line
    }
}

/// Splits a line from its line ending (`\n`, `\r\n` or none).
fn split_ending(line: &str) -> (&str, &str) {
    let body = line
        .strip_suffix('\n')
        .map_or(line, |body| body.strip_suffix('\r').unwrap_or(body));
    (body, &line[body.len()..])
}

/// A line as git reads it: blanks, then the pattern (C-quoted when it starts with `"`), then
/// attributes separated by blanks. None for a blank line or a comment.
fn parse_line(line: &str) -> Option<ParsedLine<'_>> {
    let (line, _) = split_ending(line);
    let blank = |c: char| c == ' ' || c == '\t' || c == '\r';
    let start = line.len() - line.trim_start_matches(blank).len();
    let rest = &line[start..];
    if rest.is_empty() || rest.starts_with('#') {
        return None;
    }
    let (pattern, after) = if rest.starts_with('"') {
        let (pattern, used) = c_unquote(rest)?;
        (pattern, &rest[used..])
    } else {
        let end = rest.find(blank).unwrap_or(rest.len());
        (rest[..end].to_string(), &rest[end..])
    };
    let lead_len = line.len() - after.len();
    Some(ParsedLine {
        lead: &line[..lead_len],
        pattern,
        attributes: after.split(blank).filter(|a| !a.is_empty()).collect(),
    })
}

/// Whether two patterns name the same path: a leading `/` only anchors a pattern that has no
/// other `/`, one that has is anchored anyway.
fn same_pattern(a: &str, b: &str) -> bool {
    fn anchored(pattern: &str) -> &str {
        match pattern.strip_prefix('/') {
            Some(rest) if rest.contains('/') => rest,
            _ => pattern,
        }
    }
    anchored(a) == anchored(b)
}

/// The path as a pattern that matches it alone: glob characters escaped, anchored to the
/// root (a path without `/` would match in every folder, and `!` or `#` first would make a
/// negation or a comment).
fn glob_escaped(path: &str) -> String {
    let mut pattern = String::new();
    if !path.contains('/') || path.starts_with(['!', '#']) {
        pattern.push('/');
    }
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// The pattern as written in the file: C-quoted when it holds blanks, quotes or control
/// characters (which end or break an unquoted pattern).
fn written_pattern(path: &str) -> String {
    let pattern = glob_escaped(path);
    if !pattern
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c.is_control())
    {
        return pattern;
    }
    let mut quoted = String::from('"');
    for c in pattern.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\t' => quoted.push_str("\\t"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    quoted.push_str(&format!("\\{byte:03o}"));
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Reads a C-quoted string at the start of `text` (git's quoting of paths): the string and
/// the bytes it took. None when it is not one.
fn c_unquote(text: &str) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((String::from_utf8(out).ok()?, i + 1)),
            b'\\' => {
                let escaped = *bytes.get(i + 1)?;
                i += 2;
                let byte = match escaped {
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'"' | b'\\' => escaped,
                    b'0'..=b'3' => {
                        let digits = bytes.get(i..i + 2)?;
                        if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                            return None;
                        }
                        i += 2;
                        ((escaped - b'0') << 6) | ((digits[0] - b'0') << 3) | (digits[1] - b'0')
                    }
                    _ => return None,
                };
                out.push(byte);
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn adds_a_line_and_keeps_every_other_byte() {
        let text = "# ours\n*.png binary\r\n\nsrc/** text";
        let (out, report) = with_golden_attributes(text, &paths(&["data/backup.json"]));
        assert_eq!(
            out,
            "# ours\n*.png binary\r\n\nsrc/** text\r\ndata/backup.json diff=golden merge=golden\r\n"
        );
        assert_eq!(report[0].was, None);
        assert!(report[0].changed());
        let (again, report) = with_golden_attributes(&out, &paths(&["data/backup.json"]));
        assert_eq!(again, out);
        assert!(!report[0].changed());
    }

    #[test]
    fn completes_the_users_line_for_the_path_keeping_its_attributes() {
        let text = "/data/backup.json text eol=lf -diff\nother.json diff=golden\n";
        let (out, report) = with_golden_attributes(text, &paths(&["data/backup.json"]));
        assert_eq!(
            out,
            "/data/backup.json text eol=lf diff=golden merge=golden\nother.json diff=golden\n"
        );
        assert_eq!(
            report[0].was.as_deref(),
            Some("/data/backup.json text eol=lf -diff")
        );
        let (_, report) = with_golden_attributes(&out, &paths(&["data/backup.json"]));
        assert!(!report[0].changed());
    }

    #[test]
    fn odd_paths_are_escaped_quoted_and_recognised_again() {
        assert_eq!(written_pattern("backup.json"), "/backup.json");
        assert_eq!(written_pattern("data/a*b?.json"), r"data/a\*b\?.json");
        assert_eq!(written_pattern("my data/x.json"), "\"my data/x.json\"");
        assert_eq!(
            written_pattern("d/say \"hi\".json"),
            r#""d/say \"hi\".json""#
        );
        assert_eq!(written_pattern("d/[x].json"), r#"d/\[x].json"#);
        assert_eq!(written_pattern("d/tab\t[x].json"), r#""d/tab\t\\[x].json""#);
        for path in [
            "my data/x.json",
            "d/say \"hi\".json",
            "d/tab\t[x].json",
            "#x",
        ] {
            let (once, _) = with_golden_attributes("", &paths(&[path]));
            let (twice, report) = with_golden_attributes(&once, &paths(&[path]));
            assert_eq!(once, twice, "{path}");
            assert!(!report[0].changed(), "{path}");
        }
    }

    #[test]
    fn comments_and_other_patterns_are_not_the_path() {
        let text = "# data/backup.json diff=golden merge=golden\ndata/backup.json.bak -diff\n";
        let (out, report) = with_golden_attributes(text, &paths(&["data/backup.json"]));
        assert!(out.starts_with(text));
        assert_eq!(report[0].was, None);
    }

    #[test]
    fn shell_words_survive_spaces_and_quotes() {
        assert_eq!(shell_word("/usr/local/bin/golden"), "/usr/local/bin/golden");
        assert_eq!(shell_word("/opt/my tools/golden"), "'/opt/my tools/golden'");
        assert_eq!(shell_word("/it's/golden"), r"'/it'\''s/golden'");
        assert_eq!(shell_word("/a$HOME/`x`"), "'/a$HOME/`x`'");
    }

    #[test]
    fn the_merge_driver_doubles_the_percent_signs_of_the_path() {
        let entries = config_entries("'/opt/100%/golden'");
        let driver = entries
            .iter()
            .find(|(key, _)| *key == "merge.golden.driver")
            .map(|(_, value)| value.as_str());
        assert_eq!(driver, Some("'/opt/100%%/golden' merge %O %A %B --name %P"));
    }
}
