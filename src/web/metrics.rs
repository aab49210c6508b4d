//! `GET /metrics`: Prometheus text format, `dtsflac_` prefix.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::WebState;
use crate::queue::store::JobState;
use crate::view::Snapshot;

pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP dtsflac_{name} {help}");
        let _ = writeln!(out, "# TYPE dtsflac_{name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(out, "dtsflac_{name}{labels} {v}");
        }
    };
    metric(
        "jobs",
        "gauge",
        "Jobs in the store by state.",
        JobState::ALL
            .iter()
            .map(|st| (format!("{{state=\"{st}\"}}"), s.summary.count(*st) as f64))
            .collect(),
    );
    metric(
        "converted_audio_seconds_total",
        "counter",
        "Seconds of audio converted to FLAC.",
        vec![(String::new(), s.summary.done_audio_seconds)],
    );
    metric(
        "output_bytes_total",
        "counter",
        "Bytes of FLAC written.",
        vec![(String::new(), s.summary.done_output_bytes as f64)],
    );
    // From the jobs' recorded results: the drive may be gone by now.
    metric(
        "input_bytes_total",
        "counter",
        "Bytes of DTS read by finished jobs.",
        vec![(String::new(), s.summary.done_input_bytes as f64)],
    );
    let speeds: Vec<f64> = s.jobs.iter().filter_map(|j| j.speed).collect();
    metric(
        "conversion_speed",
        "gauge",
        "Sum of the running jobs' speeds, in seconds of audio per second.",
        vec![(String::new(), speeds.iter().sum())],
    );
    metric(
        "queue_length",
        "gauge",
        "Jobs waiting to run.",
        vec![(
            String::new(),
            s.jobs
                .iter()
                .filter(|j| j.state == JobState::Queued)
                .count() as f64,
        )],
    );
    metric(
        "drives_present",
        "gauge",
        "Drives plugged in and mounted.",
        vec![(
            String::new(),
            s.drives.iter().filter(|d| d.state.is_present()).count() as f64,
        )],
    );
    metric(
        "paused",
        "gauge",
        "1 when the queue is paused.",
        vec![(String::new(), if s.paused { 1.0 } else { 0.0 })],
    );
    if let Some(t) = s.box_info.cpu_temp_c {
        metric(
            "cpu_temperature_celsius",
            "gauge",
            "Hottest CPU thermal zone.",
            vec![(String::new(), t)],
        );
    }
    out
}

pub async fn metrics(State(s): State<WebState>) -> Response {
    let text = render(&s.daemon.status().snapshot);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
