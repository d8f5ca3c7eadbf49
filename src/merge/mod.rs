//! `golden merge`: a git merge driver for backup files, and the step that ends a conflicted
//! merge once the user resolved it.
//!
//! Every backup rewrites the header (`created_at`, totals, checksum), so two branches that both
//! touched the dataset always conflict in git's text merge, and a text merge of records can
//! also "succeed" into a file that is no valid backup. Git calls a merge driver with three temp
//! files instead (`%O %A %B`: BASE, OURS, THEIRS), takes what the driver leaves in OURS as the
//! result, and exit 0 as a clean merge. This driver merges the records by id
//! ([`three_way`]), computes the header again, and writes the result in golden's canonical
//! bytes (those `golden convert` writes). With conflicts it writes one file holding both
//! resolutions between conflict markers ([`markers`]), which `golden verify` refuses, prints
//! each conflict, and exits 1; `golden merge --finish FILE` then checks the resolved file and
//! rewrites it with a fresh header.
//!
//! Memory: OURS and THEIRS are held whole as records (about their size in the file each), and
//! with conflicts the two resolutions' text too; BASE is held as digests of its fields. A
//! merge driver can afford that: git runs it on the three versions of one file.
//!
//! What is written is atomic (a temp file beside the destination, renamed over it): an
//! interrupted or failed merge leaves OURS as it was, never half written. An input that does
//! not read as a backup exits 2 and leaves OURS untouched (git then reports a conflict with
//! OURS as the file's content).

pub mod dataset;
pub mod markers;
pub mod three_way;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use serde_json::Value;
use uuid::Uuid;

use crate::atomic;
use crate::backup_file::reader::ReadError;
use crate::backup_file::source::BackupSource;
use crate::error::invalid_input;
use crate::interrupt;
use crate::validate::{self, Counts, Problem};
use dataset::FieldKey;
use dataset::{
    read_base, read_base_records, read_dataset, write_canonical, write_in_order_of, Dataset, Wanted,
};
use three_way::{Conflict, Disagreement, Subject};

/// What a merge wrote.
#[derive(Debug)]
pub struct MergeReport {
    /// Every conflict, sorted; none for a clean merge.
    pub conflicts: Vec<Conflict>,
    /// The report of each conflict, a few lines each, in the same order.
    pub described: Vec<Vec<String>>,
    /// The conflict blocks of the written file.
    pub blocks: usize,
    /// What the result holds (resolved as ours, with conflicts).
    pub counts: Counts,
}

/// Merges `theirs` into `ours` with their common ancestor `base` (an empty file: none), and
/// writes the result to `dest` (OURS itself for git). Labels name the sides in the markers.
pub fn merge_files(
    base: &Path,
    ours: &Path,
    theirs: &Path,
    dest: &Path,
    labels: (&str, &str),
) -> Result<MergeReport> {
    let ours_data = read_dataset(ours, "OURS")?;
    let theirs_data = read_dataset(theirs, "THEIRS")?;
    let base_digests = read_base(base, &Wanted::disagreements(&ours_data, &theirs_data))?;
    interrupt::check()?;
    let three_way::Merged {
        ours: as_ours,
        theirs: as_theirs,
        mut conflicts,
    } = three_way::merge(&base_digests, &ours_data, &theirs_data)?;
    drop((base_digests, ours_data, theirs_data));
    let created_at = created_at_of(&as_ours, &as_theirs);

    // Written first into a private folder, then put in place: the writer would otherwise
    // keep the destination's own `created_at` when the data equals it.
    let scratch = tempfile::tempdir().wrap_err("creating a temp folder for the merge")?;
    let ours_path = scratch.path().join("ours.json");
    let written = write_canonical(&as_ours, created_at, &ours_path)?
        .persist()
        .wrap_err("writing the merge result to a temp file")?;
    let totals = written.totals;
    let counts = Counts {
        analyses: totals.analyses,
        chunks: totals.chunks,
        artifacts: totals.artifacts,
        queries: totals.queries,
    };
    let mut temp = atomic::temp_file_beside(dest)
        .wrap_err_with(|| format!("creating a temp file beside {}", dest.display()))?;
    let mut blocks = 0;
    let mut described = Vec::new();
    if conflicts.is_empty() {
        let mut result = File::open(&ours_path).wrap_err("reading the merge result back")?;
        std::io::copy(&mut result, temp.as_file_mut())
            .wrap_err_with(|| format!("writing a temp file beside {}", dest.display()))?;
    } else {
        let theirs_path = scratch.path().join("theirs.json");
        write_in_order_of(&as_theirs, &as_ours, created_at, &theirs_path)?
            .persist()
            .wrap_err("writing the merge result to a temp file")?;
        fill_base_values(base, &mut conflicts)?;
        described = conflicts
            .iter()
            .map(|conflict| describe_conflict(conflict, &as_ours, &as_theirs))
            .collect();
        // The records are no longer needed: the texts of both resolutions take their place.
        drop((as_ours, as_theirs));
        let sentinel = markers::unresolved_checksum(conflicts.len());
        let mut out = BufWriter::with_capacity(256 * 1024, temp.as_file_mut());
        blocks = markers::lay_out(
            read_text(&ours_path)?,
            read_text(&theirs_path)?,
            labels,
            &sentinel,
            &mut out,
        )
        .and_then(|blocks| out.flush().map(|()| blocks))
        .wrap_err_with(|| format!("writing a temp file beside {}", dest.display()))?;
    }
    interrupt::commit_point()?;
    let persisted = atomic::persist(temp, dest).wrap_err_with(|| {
        format!(
            "putting the merge result in place at {}; it was not changed",
            dest.display()
        )
    });
    interrupt::after_commit(persisted.is_ok(), true);
    persisted?;
    Ok(MergeReport {
        conflicts,
        described,
        blocks,
        counts,
    })
}

/// The result's `created_at`: the later of OURS' and THEIRS'; for files without one, the
/// creation time of the newest analysis, as `convert` takes it.
fn created_at_of(ours: &Dataset, theirs: &Dataset) -> DateTime<Utc> {
    ours.created_at
        .or_else(|| {
            ours.analyses
                .values()
                .chain(theirs.analyses.values())
                .map(|head| head.created_at)
                .max()
        })
        .unwrap_or(DateTime::UNIX_EPOCH)
}

fn read_text(path: &Path) -> Result<String> {
    // Room for the checksum sentinel, longer than the checksum it replaces.
    let size = std::fs::metadata(path).map_or(0, |metadata| metadata.len() as usize);
    let mut text = String::with_capacity(size + 256);
    File::open(path)
        .and_then(|mut file| file.read_to_string(&mut text))
        .wrap_err("reading a resolution of the merge back")?;
    Ok(text)
}

/// Puts BASE's values in the field conflicts, for the report (BASE was read as digests).
fn fill_base_values(base: &Path, conflicts: &mut [Conflict]) -> Result<()> {
    let mut wanted = Wanted::default();
    for conflict in conflicts.iter() {
        if !matches!(
            conflict.disagreement,
            Disagreement::Fields {
                added_on_both: false,
                ..
            }
        ) {
            continue;
        }
        match &conflict.subject {
            Subject::Analysis(id) => {
                wanted.analyses.insert(*id);
            }
            Subject::Chunk(id) => {
                wanted.chunks.insert(*id);
            }
            Subject::Artifact(id) => {
                wanted.artifacts.insert(*id);
            }
            Subject::Query(id) => {
                wanted.queries.insert(id.clone());
            }
            _ => {}
        }
    }
    let base = read_base_records(base, &wanted)?;
    use dataset::Fielded;
    for conflict in conflicts.iter_mut() {
        let Disagreement::Fields { fields, .. } = &mut conflict.disagreement else {
            continue;
        };
        let in_base = match &conflict.subject {
            Subject::File => Some(base.file.clone()),
            Subject::Analysis(id) => base.analyses.get(id).map(|record| record.fields()),
            Subject::Chunk(id) => base.chunks.get(id).map(|record| record.fields()),
            Subject::Artifact(id) => base.artifacts.get(id).map(|record| record.fields()),
            Subject::Query(id) => base.queries.get(id).map(|record| record.fields()),
            _ => None,
        };
        if let Some(in_base) = in_base {
            for field in fields.iter_mut() {
                field.base = in_base.get(&field.field).cloned();
            }
        }
    }
    Ok(())
}

/// What `--finish` wrote.
#[derive(Debug)]
pub struct FinishReport {
    pub counts: Counts,
    pub changed: bool,
}

/// Ends a conflicted merge: checks that `file` has no conflict marker left and is a valid
/// backup (but for its stale totals and checksum), then rewrites it in place, canonically,
/// with a fresh header. `problems` receives what is wrong when it is not valid.
pub fn finish(file: &Path, problems: &mut Vec<Problem>) -> Result<FinishReport> {
    let shown = file.display();
    let opened = crate::paths::open_regular(file, "merged file")?;
    if let Some((line, text)) =
        markers::first_marker(opened).wrap_err_with(|| format!("reading {shown}"))?
    {
        return Err(invalid_input(format!(
            "{shown} still has a conflict marker at line {line} ({text}): in each block keep the \
             lines of one side (or edit them) and delete the marker lines, then run \
             `golden merge --finish {shown}` again; nothing was written"
        )));
    }
    let opened = crate::paths::open_regular(file, "merged file")?;
    if let Some((line, key)) =
        markers::first_repeated_key(opened).wrap_err_with(|| format!("reading {shown}"))?
    {
        return Err(invalid_input(format!(
            "{shown} has the key {} twice in one record (line {line}): both sides of a conflict \
             block were kept; keep the lines of one side, then run `golden merge --finish {}` \
             again; nothing was written",
            serde_json::Value::from(key),
            quoted_path(file)
        )));
    }
    let source = BackupSource::open(file).map_err(ReadError::into_report)?;
    let validation =
        validate::validate_source_with_stale_header(&source).map_err(ReadError::into_report)?;
    let checksum = validation
        .header
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get("checksum"))
        .and_then(Value::as_str);
    if !checksum.is_some_and(|c| c.starts_with(markers::UNRESOLVED_CHECKSUM_PREFIX)) {
        // Finishing a file that no conflicted merge wrote would bless whatever it holds (an
        // ours left as it was by a merge that stopped, a hand edit) as a merge's result.
        return Err(invalid_input(format!(
            "{shown} is not the result of a conflicted `golden merge` (its checksum does not say \
             \"{}\"): there is nothing to finish, and nothing was written; `golden verify {}` \
             checks it",
            markers::UNRESOLVED_CHECKSUM_PREFIX,
            quoted_path(file)
        )));
    }
    if !validation.is_ok() {
        problems.extend(validation.problems.iter().cloned());
        return Err(invalid_input(format!(
            "{shown} has {} problem{} once merged: fix them (a block resolved with the ours side \
             and a related one with the theirs side can disagree), then run `golden merge --finish {shown}` \
             again; nothing was written",
            validation.problems.len(),
            if validation.problems.len() == 1 { "" } else { "s" }
        )));
    }
    let counts = validation.counts;
    let prepared = crate::convert::convert(&source, validation, file)?;
    source.check_unchanged()?;
    interrupt::commit_point()?;
    let written = prepared
        .persist()
        .wrap_err_with(|| format!("putting {shown} in place; it was not changed"));
    interrupt::after_commit(written.is_ok(), true);
    Ok(FinishReport {
        counts,
        changed: written?.changed,
    })
}

/// `path` as one word for sh, for a command to copy.
fn quoted_path(path: &Path) -> String {
    crate::git::setup::shell_word(&path.display().to_string()).into_owned()
}

/// The longest value a conflict report shows whole.
const SHOWN_CHARS: usize = 72;

/// A value for a one-line report: JSON, shortened around `from` (a character offset) when
/// long.
fn shown_value(value: Option<&Value>, from: usize) -> String {
    let Some(value) = value else {
        return "(absent)".to_string();
    };
    let text = value.to_string();
    let total = text.chars().count();
    if total <= SHOWN_CHARS {
        return text;
    }
    let start = from
        .saturating_sub(16)
        .min(total.saturating_sub(SHOWN_CHARS));
    let piece: String = text.chars().skip(start).take(SHOWN_CHARS).collect();
    format!(
        "{}{piece}{} ({total} characters)",
        if start > 0 { "…" } else { "" },
        if start + SHOWN_CHARS < total {
            "…"
        } else {
            ""
        }
    )
}

/// Where two values' JSON first differ, in characters.
fn first_difference(a: Option<&Value>, b: Option<&Value>) -> usize {
    match (a, b) {
        (Some(a), Some(b)) => a
            .to_string()
            .chars()
            .zip(b.to_string().chars())
            .take_while(|(x, y)| x == y)
            .count(),
        _ => 0,
    }
}

/// What a record is, for a report line: its kind, id and where it is.
pub fn describe_subject(subject: &Subject, ours: &Dataset, theirs: &Dataset) -> String {
    let analysis_of = |id: &uuid::Uuid| {
        ours.analyses
            .get(id)
            .or_else(|| theirs.analyses.get(id))
            .map(|head| format!("analysis {id} ({})", head.url))
            .unwrap_or_else(|| format!("analysis {id}"))
    };
    match subject {
        Subject::File => "the file's own keys".to_string(),
        Subject::Analysis(id) => analysis_of(id),
        Subject::Chunk(id) => match ours.chunks.get(id).or_else(|| theirs.chunks.get(id)) {
            Some(chunk) => format!(
                "chunk {id} (chunk_index {} of {})",
                chunk.record.chunk_index,
                analysis_of(&chunk.analysis)
            ),
            None => format!("chunk {id}"),
        },
        Subject::Artifact(id) => {
            match ours.artifacts.get(id).or_else(|| theirs.artifacts.get(id)) {
                Some(artifact) => format!("artifact {id} (of {})", analysis_of(&artifact.analysis)),
                None => format!("artifact {id}"),
            }
        }
        Subject::Query(id) => format!("query {id}"),
        Subject::ChunkPlace {
            analysis,
            chunk_index,
        } => format!("chunk_index {chunk_index} of {}", analysis_of(analysis)),
        Subject::ArtifactVersion { analysis, version } => format!(
            "the artifact of {}{}",
            analysis_of(analysis),
            version.map_or(String::new(), |v| format!(" at version {v}"))
        ),
    }
}

/// The report of one conflict, a few lines: what, which field, each side's value.
pub fn describe_conflict(conflict: &Conflict, ours: &Dataset, theirs: &Dataset) -> Vec<String> {
    let subject = describe_subject(&conflict.subject, ours, theirs);
    let kind = match conflict.subject {
        Subject::ArtifactVersion { .. } => "artifact",
        _ => "chunk",
    };
    let ids = |ids: &[uuid::Uuid]| match ids {
        [] => "none".to_string(),
        ids => ids
            .iter()
            .map(|id| format!("{kind} {id}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    match &conflict.disagreement {
        Disagreement::Fields {
            added_on_both,
            fields,
        } => {
            let mut lines = Vec::new();
            for field in fields {
                let from = first_difference(field.ours.as_ref(), field.theirs.as_ref());
                lines.push(format!(
                    "conflict: {subject}: field {}{}",
                    field.field,
                    if *added_on_both {
                        " (added on both sides with different values)"
                    } else {
                        " changed on both sides"
                    }
                ));
                lines.push(format!(
                    "    ours:   {}",
                    shown_value(field.ours.as_ref(), from)
                ));
                lines.push(format!(
                    "    theirs: {}",
                    shown_value(field.theirs.as_ref(), from)
                ));
                if !added_on_both {
                    lines.push(format!(
                        "    base:   {}",
                        shown_value(field.base.as_ref(), from)
                    ));
                }
            }
            // These fields decide where the record is written: each side has it elsewhere.
            let moves = fields
                .iter()
                .any(|field| match (&conflict.subject, &field.field) {
                    (Subject::Chunk(_) | Subject::Artifact(_), FieldKey::Analysis) => true,
                    (Subject::Artifact(_), FieldKey::Key(key)) => {
                        key == "version" || key == "created_at"
                    }
                    _ => false,
                });
            if moves {
                lines.push(
                    "    it sits in another place on each side, so it is in two blocks: keep the \
                     same side in both"
                        .to_string(),
                );
            }
            lines
        }
        Disagreement::DeletedChanged {
            deleted_by,
            changes,
        } => {
            let kept = deleted_by.other();
            let mut lines = vec![format!(
                "conflict: {subject}: deleted by {}, changed by {}:",
                deleted_by.name(),
                kept.name()
            )];
            lines.extend(
                changes
                    .iter()
                    .map(|change| format!("    {} {change}", kept.name())),
            );
            lines.push(format!(
                "    in its block the {} side keeps {} as {} has it, the {} side deletes it",
                kept.name(),
                match conflict.subject {
                    Subject::Analysis(_) => "the whole analysis (its chunks and artifacts)",
                    _ => "it",
                },
                kept.name(),
                deleted_by.name()
            ));
            let chunks: BTreeSet<Uuid> = match &conflict.subject {
                Subject::Analysis(analysis) => [ours, theirs]
                    .iter()
                    .flat_map(|side| side.chunks.iter())
                    .filter(|(_, chunk)| chunk.analysis == *analysis)
                    .map(|(id, _)| *id)
                    .collect(),
                Subject::Chunk(id) => BTreeSet::from([*id]),
                _ => BTreeSet::new(),
            };
            lines.extend(queries_that_follow(&chunks, ours, theirs));
            lines
        }
        Disagreement::Place {
            ours: ours_ids,
            theirs: theirs_ids,
        } => {
            let mut lines = vec![
                format!("conflict: {subject}: taken by different records on each side"),
                format!("    ours has {} there", ids(ours_ids)),
                format!("    theirs has {} there", ids(theirs_ids)),
                "    keep one side, or keep both and give one of them another place".to_string(),
            ];
            let chunks: BTreeSet<Uuid> = match conflict.subject {
                Subject::ChunkPlace { .. } => ours_ids.iter().chain(theirs_ids).copied().collect(),
                _ => BTreeSet::new(),
            };
            lines.extend(queries_that_follow(&chunks, ours, theirs));
            lines
        }
    }
}

/// The queries whose expected chunks differ between the two resolutions because of `chunks`
/// (a chunk one resolution keeps and the other not): their blocks go with the conflict's.
fn queries_that_follow(chunks: &BTreeSet<Uuid>, ours: &Dataset, theirs: &Dataset) -> Vec<String> {
    let expected = |side: &Dataset, id: &str| -> BTreeSet<Uuid> {
        side.queries
            .get(id)
            .map(|query| {
                query
                    .expected_chunk_ids
                    .iter()
                    .filter(|chunk| chunks.contains(chunk))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    };
    let ids: BTreeSet<&String> = ours.queries.keys().chain(theirs.queries.keys()).collect();
    let following: Vec<&str> = ids
        .into_iter()
        .filter(|id| expected(ours, id) != expected(theirs, id))
        .map(String::as_str)
        .collect();
    if following.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "    the expected chunks of {} follow: keep the same side in {} block{}",
        following
            .iter()
            .map(|id| format!("query {id}"))
            .collect::<Vec<_>>()
            .join(", "),
        if following.len() == 1 { "its" } else { "their" },
        if following.len() == 1 { "" } else { "s" }
    )]
}
