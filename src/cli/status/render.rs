//! The status as a readable table: one section per direction, a line per fact, the newest
//! failures and dead events listed. Reads the JSON shape of `GET /api/sync/status`; a part that
//! could not be read shows its error, and fields this renderer does not know (added by a newer
//! agent) are shown as they are rather than dropped.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The fields each section shows by name; the others are listed after them.
const KNOWN_FORWARD: &[&str] = &["queue", "recent_failures", "config_fault", "state"];
const KNOWN_REVERSE: &[&str] = &["inbox", "state", "catchup_watermarks", "dead_events"];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn duration(secs: &Value) -> String {
    match secs.as_u64() {
        None => "-".to_owned(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        Some(s) if s < 86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        Some(s) => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn line(out: &mut String, label: &str, value: impl AsRef<str>) {
    let _ = writeln!(out, "  {label:<15} {}", value.as_ref());
}

/// `error` of a part that could not be read, if it is one.
fn read_error(v: &Value) -> Option<String> {
    v.get("error").map(text)
}

/// A durable part's line, or why it could not be read.
fn part(out: &mut String, label: &str, value: &Value, show: impl Fn(&Value) -> String) {
    match read_error(value) {
        Some(e) => line(out, label, format!("cannot be read: {e}")),
        None => line(out, label, show(value)),
    }
}

fn last_error(out: &mut String, state: &Value) {
    let error = when_and_what(&state["last_error_at"], &state["last_error"]);
    line(out, "last error", error);
}

fn when_and_what(at: &Value, what: &Value) -> String {
    match (at.is_null(), what.is_null()) {
        (_, true) => "none".to_owned(),
        (true, false) => text(what),
        (false, false) => format!("{}: {}", text(at), text(what)),
    }
}

pub fn render(status: &Value) -> String {
    let mut out = String::new();
    header(&mut out, &status["agent"]);
    forward(&mut out, &status["forward"]);
    reverse(&mut out, &status["reverse"]);
    out
}

fn header(out: &mut String, agent: &Value) {
    if agent["running"] == Value::Bool(false) {
        let _ = writeln!(
            out,
            "syncbridge status: the agent is NOT running ({})",
            text(&agent["reason"])
        );
        let _ = writeln!(
            out,
            "  read directly from SQL Server and the inbox file instead"
        );
        return;
    }
    let ready = if agent["ready"] == Value::Bool(true) {
        "ready"
    } else {
        "NOT ready"
    };
    let _ = writeln!(
        out,
        "syncbridge status: the agent is running, {ready} (version {}, up {})",
        text(&agent["version"]),
        duration(&agent["uptime_secs"])
    );
    if !agent["startup_problem"].is_null() {
        line(out, "start-up", text(&agent["startup_problem"]));
    }
}

fn forward(out: &mut String, f: &Value) {
    let _ = writeln!(out, "\nSQL Server → Supabase");
    part(out, "queue", &f["queue"], |q| {
        format!(
            "{} pending (oldest {}) · {} synced · {} failed",
            text(&q["pending"]),
            duration(&q["oldest_pending_age_secs"]),
            text(&q["synced"]),
            text(&q["failed"])
        )
    });
    let state = &f["state"];
    if state.is_object() {
        line(out, "last success", text(&state["last_success_at"]));
        last_error(out, state);
        line(
            out,
            "config fault",
            when_and_what(&Value::Null, &f["config_fault"]),
        );
        line(
            out,
            "since start",
            format!(
                "{} notifications · {} synced · {} retried · {} failed",
                text(&state["notifications"]),
                text(&state["items_synced"]),
                text(&state["items_retried"]),
                text(&state["items_failed"])
            ),
        );
    }
    others(out, f, KNOWN_FORWARD);
    list(out, "newest failures", &f["recent_failures"], |item| {
        format!(
            "#{} {} {} {} · {} attempts · {}",
            text(&item["id"]),
            text(&item["table"]),
            text(&item["record_id"]),
            text(&item["operation"]),
            text(&item["attempts"]),
            text(&item["error"])
        )
    });
}

fn reverse(out: &mut String, r: &Value) {
    let _ = writeln!(out, "\nSupabase → SQL Server");
    part(out, "inbox", &r["inbox"], |inbox| {
        format!(
            "{} waiting (oldest {}) · {} dead",
            text(&inbox["depth"]),
            duration(&inbox["oldest_unapplied_age_secs"]),
            text(&inbox["dead"])
        )
    });
    let state = &r["state"];
    if state.is_object() {
        line(out, "last applied", text(&state["last_applied_at"]));
        last_error(out, state);
        line(
            out,
            "catch-up",
            format!(
                "last run {}, {}",
                text(&state["catchup_last_run_at"]),
                match &state["catchup_last_error"] {
                    Value::Null => "ok".to_owned(),
                    e => format!("failed: {}", text(e)),
                }
            ),
        );
        line(
            out,
            "since start",
            format!(
                "{} webhooks accepted · {} refused · {} events applied",
                text(&state["webhooks_accepted"]),
                text(&state["webhooks_rejected"]),
                text(&state["events_applied"])
            ),
        );
    }
    if let Some(marks) = r["catchup_watermarks"]
        .as_object()
        .filter(|m| !m.is_empty())
    {
        let shown: Vec<String> = marks
            .iter()
            .map(|(t, w)| format!("{t} at {}", text(&w["version"])))
            .collect();
        line(out, "watermarks", shown.join(" · "));
    }
    others(out, r, KNOWN_REVERSE);
    list(out, "dead events", &r["dead_events"], |e| {
        format!(
            "#{} {} {} · {}",
            text(&e["id"]),
            text(&e["table"]),
            text(&e["key"]),
            text(&e["error"])
        )
    });
}

/// Fields of `section` this renderer has no line for, as they are.
fn others(out: &mut String, section: &Value, known: &[&str]) {
    let empty = Map::new();
    for (key, value) in section.as_object().unwrap_or(&empty) {
        if !known.contains(&key.as_str()) && !value.is_null() {
            line(out, &key.replace('_', " "), text(value));
        }
    }
}

fn list(out: &mut String, title: &str, items: &Value, show: impl Fn(&Value) -> String) {
    if let Some(e) = read_error(items) {
        line(out, title, format!("cannot be read: {e}"));
        return;
    }
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        line(out, title, "none");
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for item in items {
        let _ = writeln!(out, "    {}", show(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_offline_status_says_so_and_shows_what_it_read() {
        let status = json!({
            "agent": {"running": false, "reason": "no agent answers on 127.0.0.1:3000: connection refused"},
            "forward": {"queue": {"error": "SQL Server is unavailable: refused"},
                        "recent_failures": {"error": "SQL Server is unavailable: refused"}},
            "reverse": {"inbox": {"depth": 2, "dead": 1, "oldest_unapplied_age_secs": 75},
                        "catchup_watermarks": {"aligner_notes": {"version": "2026-12-01T10:00:00Z", "key": "{}"}},
                        "dead_events": [{"id": 7, "table": "aligner_notes", "key": "{\"note_uid\":\"x\"}", "error": "refused"}]},
        });
        let text = render(&status);
        for expected in [
            "the agent is NOT running (no agent answers on 127.0.0.1:3000: connection refused)",
            "  queue           cannot be read: SQL Server is unavailable: refused",
            "  inbox           2 waiting (oldest 1m 15s) · 1 dead",
            "  watermarks      aligner_notes at 2026-12-01T10:00:00Z",
            "    #7 aligner_notes {\"note_uid\":\"x\"} · refused",
        ] {
            assert!(text.contains(expected), "no {expected:?} in\n{text}");
        }
    }

    #[test]
    fn fields_a_newer_agent_adds_are_shown_not_dropped() {
        let status = json!({"agent": {"running": true, "ready": true, "version": "9", "uptime_secs": 4000},
                            "forward": {"outage": {"since": "2026-12-01T10:00:00Z"}}, "reverse": {}});
        let text = render(&status);
        assert!(
            text.contains("running, ready (version 9, up 1h 06m)"),
            "{text}"
        );
        assert!(
            text.contains("  outage          {\"since\":\"2026-12-01T10:00:00Z\"}"),
            "{text}"
        );
    }
}
