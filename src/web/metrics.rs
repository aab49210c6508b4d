//! `GET /metrics`: Prometheus text format, `dtsflac_` prefix.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::WebState;
use crate::app::{DriveState, Snapshot};
use crate::queue::store::JobState;

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
            .map(|st| {
                let n = s.jobs.iter().filter(|j| j.state == *st).count();
                (format!("{{state=\"{st}\"}}"), n as f64)
            })
            .collect(),
    );
    let done: Vec<_> = s
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Done)
        .collect();
    metric(
        "converted_audio_seconds_total",
        "counter",
        "Seconds of audio converted to FLAC.",
        vec![(
            String::new(),
            done.iter().filter_map(|j| j.duration_seconds).sum(),
        )],
    );
    metric(
        "output_bytes_total",
        "counter",
        "Bytes of FLAC written.",
        vec![(
            String::new(),
            done.iter().filter_map(|j| j.output_bytes).sum::<u64>() as f64,
        )],
    );
    // From the jobs' recorded results: the drive may be gone by now.
    let input = done.iter().filter_map(|j| j.input_bytes).sum::<u64>() as f64;
    metric(
        "input_bytes_total",
        "counter",
        "Bytes of DTS read by finished jobs.",
        vec![(String::new(), input)],
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
            s.drives
                .iter()
                .filter(|d| {
                    matches!(
                        d.state,
                        DriveState::Scanning
                            | DriveState::Converting
                            | DriveState::Idle
                            | DriveState::Mounting
                    )
                })
                .count() as f64,
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
    let app = s.app.clone();
    let text = tokio::task::spawn_blocking(move || render(&app.snapshot()))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
