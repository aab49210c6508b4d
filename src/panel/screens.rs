//! The panel's screens, drawn from a `Snapshot` onto any embedded-graphics
//! target: the OLED, the `/panel.png` mirror and the tests all get the same
//! pixels. Pure functions of the model: no clocks, no I/O.

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

use super::text::{self, Size as Font};
use crate::fmt;
use crate::queue::store::JobState;
use crate::view::{DriveState, DriveView, JobView, Snapshot};

/// The screens NEXT cycles through; `Status` follows what the box is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Screen {
    Status,
    Queue,
    Drives,
    Network,
    Token,
}

impl Screen {
    pub fn next(self) -> Screen {
        match self {
            Screen::Status => Screen::Queue,
            Screen::Queue => Screen::Drives,
            Screen::Drives => Screen::Network,
            Screen::Network => Screen::Token,
            Screen::Token => Screen::Status,
        }
    }
}

/// Everything a screen needs.
#[derive(Debug, Clone)]
pub struct PanelModel {
    pub screen: Screen,
    pub snapshot: Snapshot,
    /// The box's LAN address and the page's URL.
    pub address: Option<String>,
    pub url: String,
    pub token: String,
    pub token_revealed: bool,
    /// Set when FFmpeg is missing or unusable.
    pub ffmpeg_problem: Option<String>,
    /// Marquee offset in pixels for names too long for the line.
    pub scroll: u32,
    /// A short acknowledgement of the last button press.
    pub notice: Option<String>,
}

const W: i32 = 128;

/// Draws dark-on-lit: for text on the inverse header and notice bars.
struct Inverted<'a, D>(&'a mut D);

impl<D: DrawTarget<Color = BinaryColor>> OriginDimensions for Inverted<'_, D> {
    fn size(&self) -> Size {
        self.0.bounding_box().size
    }
}

impl<D: DrawTarget<Color = BinaryColor>> DrawTarget for Inverted<'_, D> {
    type Color = BinaryColor;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        self.0
            .draw_iter(pixels.into_iter().map(|Pixel(p, c)| Pixel(p, c.invert())))
    }
}

fn small<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &str, x: i32, y: i32) -> i32 {
    text::draw(d, s, Point::new(x, y), Font::Small)
}

fn body<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &str, x: i32, y: i32) -> i32 {
    text::draw(d, s, Point::new(x, y), Font::Body)
}

fn right<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &str, y: i32, font: Font) {
    let x = W - text::width(s, font);
    text::draw(d, s, Point::new(x.max(0), y), font);
}

fn centered<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &str, y: i32, font: Font) {
    let s = text::truncate(s, (W / font.cell().0) as usize);
    let x = (W - text::width(&s, font)) / 2;
    text::draw(d, &s, Point::new(x.max(0), y), font);
}

/// A header line in inverse video.
fn header<D: DrawTarget<Color = BinaryColor>>(d: &mut D, left: &str, right_text: &str) {
    let _ = Rectangle::new(Point::zero(), Size::new(W as u32, 9))
        .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
        .draw(d);
    let mut inverted = Inverted(d);
    small(&mut inverted, &text::truncate(left, 16), 1, 1);
    right(&mut inverted, right_text, 1, Font::Small);
}

/// Progress bar: an outline with a fill proportional to `fraction`.
pub fn progress_bar<D: DrawTarget<Color = BinaryColor>>(d: &mut D, y: i32, fraction: f64) {
    let _ = Rectangle::new(Point::new(0, y), Size::new(W as u32, 8))
        .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
        .draw(d);
    let inner = ((W - 4) as f64 * fraction.clamp(0.0, 1.0)).round() as u32;
    if inner > 0 {
        let _ = Rectangle::new(Point::new(2, y + 2), Size::new(inner, 4))
            .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
            .draw(d);
    }
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A job's name on the panel: the track first where its source has several
/// ("2.eng Film.mkv", as the output's name says it), so a name cut to the
/// screen's width still tells them apart.
fn job_name(j: &JobView) -> String {
    match &j.track {
        Some(track) => format!("{track} {}", file_name(&j.source)),
        None => file_name(&j.source),
    }
}

/// The drive the status screen is about: the busiest one.
pub fn focus_drive(s: &Snapshot) -> Option<&DriveView> {
    let rank = |d: &DriveView| match d.state {
        DriveState::Converting => 0,
        DriveState::Scanning | DriveState::Mounting => 1,
        DriveState::Ejecting => 2,
        DriveState::Idle => 3,
        DriveState::Error => 4,
        DriveState::Removed => 5,
        DriveState::Ejected => 6,
    };
    s.drives.iter().min_by_key(|d| (rank(d), -d.id))
}

fn jobs_of(s: &Snapshot, drive: i64) -> Vec<&JobView> {
    s.jobs
        .iter()
        .filter(|j| j.drive_id == Some(drive))
        .collect()
}

pub fn render<D: DrawTarget<Color = BinaryColor>>(m: &PanelModel, d: &mut D) {
    let _ = d.clear(BinaryColor::Off);
    match m.screen {
        Screen::Status => status(m, d),
        Screen::Queue => queue(m, d),
        Screen::Drives => drives(m, d),
        Screen::Network => network(m, d),
        Screen::Token => token(m, d),
    }
    if let Some(n) = &m.notice {
        // Acknowledge a press on the bottom line, over whatever is there.
        bottom_bar(d);
        centered(&mut Inverted(d), n, 56, Font::Small);
    } else if let Some(p) = &m.snapshot.state_dir_problem {
        // Whatever the screen, the box says it cannot record its work.
        bottom_bar(d);
        text::draw_scrolling(
            &mut Inverted(d),
            p,
            Point::new(0, 56),
            Font::Small,
            W,
            m.scroll,
        );
    }
}

/// The bottom line in inverse video, for what must be seen over any screen.
fn bottom_bar<D: DrawTarget<Color = BinaryColor>>(d: &mut D) {
    let _ = Rectangle::new(Point::new(0, 55), Size::new(W as u32, 9))
        .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
        .draw(d);
}

fn status<D: DrawTarget<Color = BinaryColor>>(m: &PanelModel, d: &mut D) {
    let s = &m.snapshot;
    let Some(drive) = focus_drive(s) else {
        return idle(m, d);
    };
    let jobs = jobs_of(s, drive.id);
    let label = if drive.label.is_empty() {
        "USB drive".to_string()
    } else {
        drive.label.clone()
    };
    match drive.state {
        DriveState::Mounting | DriveState::Scanning => {
            header(d, &label, &drive.fs);
            centered(d, "Scanning...", 22, Font::Body);
            match &drive.scan {
                Some(scan) => {
                    let line = format!("{} files, {} DTS", scan.files_looked_at, scan.tracks_found);
                    centered(d, &line, 34, Font::Small);
                    let folder = scan
                        .folder
                        .strip_prefix(
                            drive
                                .mount_point
                                .as_deref()
                                .unwrap_or(std::path::Path::new("/")),
                        )
                        .unwrap_or(&scan.folder)
                        .display()
                        .to_string();
                    let folder = if folder.is_empty() {
                        "/".into()
                    } else {
                        folder
                    };
                    text::draw_scrolling(d, &folder, Point::new(0, 44), Font::Small, W, m.scroll);
                }
                None => {
                    let found = drive.tracks_found.max(jobs.len());
                    centered(d, &format!("{found} DTS track(s) found"), 38, Font::Small);
                }
            }
        }
        DriveState::Converting => converting(m, d, drive, &label, &jobs),
        DriveState::Idle => {
            header(d, &label, &drive.fs);
            let written = jobs.iter().filter(|j| j.state == JobState::Done).count();
            let failed: Vec<&&JobView> = jobs
                .iter()
                .filter(|j| j.state == JobState::Failed)
                .collect();
            centered(d, &format!("{written} FLAC written"), 14, Font::Body);
            if let Some(first) = failed.first() {
                centered(d, &format!("{} failed:", failed.len()), 27, Font::Small);
                let reason = first.error.as_deref().unwrap_or("unknown error");
                text::draw_scrolling(d, reason, Point::new(0, 36), Font::Small, W, m.scroll);
            }
            centered(d, "press EJECT", 46, Font::Body);
        }
        DriveState::Ejecting => {
            header(d, &label, &drive.fs);
            centered(d, "Ejecting...", 22, Font::Body);
            centered(d, "do not pull yet", 38, Font::Small);
        }
        DriveState::Ejected => {
            header(d, &label, "ejected");
            centered(d, "Safe to remove", 22, Font::Body);
            let written = jobs.iter().filter(|j| j.state == JobState::Done).count();
            centered(d, &format!("{written} FLAC on the drive"), 38, Font::Small);
        }
        DriveState::Removed => {
            header(d, &label, "pulled");
            let waiting = jobs
                .iter()
                .filter(|j| matches!(j.state, JobState::Interrupted | JobState::Queued))
                .count();
            if waiting > 0 {
                centered(d, "Drive pulled", 16, Font::Body);
                centered(d, "- will resume -", 28, Font::Body);
                centered(d, &format!("{waiting} job(s) wait for it"), 42, Font::Small);
            } else {
                idle(m, d)
            }
        }
        DriveState::Error => {
            header(d, &label, "error");
            let e = drive.error.as_deref().unwrap_or("cannot use this drive");
            text::draw_scrolling(d, e, Point::new(0, 20), Font::Body, W, m.scroll);
            centered(d, "press EJECT", 40, Font::Small);
        }
    }
}

fn converting<D: DrawTarget<Color = BinaryColor>>(
    m: &PanelModel,
    d: &mut D,
    drive: &DriveView,
    label: &str,
    jobs: &[&JobView],
) {
    let running: Vec<&JobView> = m
        .snapshot
        .jobs
        .iter()
        .filter(|j| matches!(j.state, JobState::Running | JobState::Paused))
        .collect();
    let current = jobs
        .iter()
        .find(|j| matches!(j.state, JobState::Running | JobState::Paused))
        .copied();
    let finished = jobs
        .iter()
        .filter(|j| j.state.is_final() || j.state == JobState::Interrupted)
        .count();
    let position = match current {
        Some(c) => jobs.iter().position(|j| j.id == c.id).unwrap_or(0) + 1,
        None => finished + 1,
    };
    let title = if m.snapshot.paused { "PAUSED" } else { label };
    header(
        d,
        title,
        &format!("{}/{}", position.min(jobs.len()), jobs.len()),
    );
    let Some(job) = current else {
        centered(d, "Waiting...", 24, Font::Body);
        return;
    };
    text::draw_scrolling(
        d,
        &job_name(job),
        Point::new(0, 11),
        Font::Body,
        W,
        m.scroll,
    );
    progress_bar(d, 23, job.progress);
    let percent = format!("{}%", (job.progress * 100.0 + 1e-6).floor() as u32);
    text::draw(d, &percent, Point::new(0, 33), Font::Large);
    let speed = job.speed.filter(|s| *s > 0.0);
    right(d, &speed.map_or("--".into(), fmt::speed), 34, Font::Small);
    let eta = match (speed, job.duration_seconds) {
        (Some(s), Some(total)) => format!("ETA {}", fmt::clock(total * (1.0 - job.progress) / s)),
        _ => "ETA --".into(),
    };
    right(d, &eta, 44, Font::Small);
    let _ = drive;
    small(
        d,
        &format!("{} running  {}", running.len(), job.profile),
        0,
        56,
    );
}

fn idle<D: DrawTarget<Color = BinaryColor>>(m: &PanelModel, d: &mut D) {
    header(
        d,
        "dtsflac",
        if m.snapshot.paused { "paused" } else { "ready" },
    );
    centered(d, "Insert USB drive", 14, Font::Body);
    match &m.ffmpeg_problem {
        Some(p) => text::draw_scrolling(d, p, Point::new(0, 30), Font::Small, W, m.scroll),
        None => centered(
            d,
            m.address.as_deref().unwrap_or("no network"),
            30,
            Font::Small,
        ),
    }
    centered(d, &m.url, 42, Font::Small);
}

fn queue<D: DrawTarget<Color = BinaryColor>>(m: &PanelModel, d: &mut D) {
    let jobs = &m.snapshot.jobs;
    let done = jobs.iter().filter(|j| j.state == JobState::Done).count();
    header(d, "Queue", &format!("{done}/{} done", jobs.len()));
    // Start at the first unfinished job so the list shows what is next.
    let start = jobs
        .iter()
        .position(|j| !j.state.is_final())
        .unwrap_or(jobs.len().saturating_sub(5));
    for (row, j) in jobs.iter().skip(start).take(5).enumerate() {
        let mark = match j.state {
            JobState::Queued => ' ',
            JobState::Running => '>',
            JobState::Paused => '=',
            JobState::Done => '+',
            JobState::Failed => '!',
            JobState::Cancelled => 'x',
            JobState::Interrupted => '~',
        };
        let name = text::truncate(&job_name(j), 20);
        small(d, &format!("{mark} {name}"), 0, 11 + row as i32 * 9);
    }
    if jobs.is_empty() {
        centered(d, "no jobs yet", 28, Font::Small);
    }
}

fn drives<D: DrawTarget<Color = BinaryColor>>(m: &PanelModel, d: &mut D) {
    header(d, "Drives", &m.snapshot.drives.len().to_string());
    for (row, dv) in m.snapshot.drives.iter().take(5).enumerate() {
        let state = serde_json::to_value(dv.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let label = if dv.label.is_empty() {
            &dv.fs
        } else {
            &dv.label
        };
        let y = 11 + row as i32 * 9;
        small(d, &text::truncate(label, 14), 0, y);
        right(d, &state, y, Font::Small);
    }
    if m.snapshot.drives.is_empty() {
        centered(d, "no drive", 28, Font::Small);
    }
}

fn network<D: DrawTarget<Color = BinaryColor>>(m: &PanelModel, d: &mut D) {
    header(d, "Network", "");
    body(d, m.address.as_deref().unwrap_or("no address"), 0, 12);
    small(d, &text::truncate(&m.url, 25), 0, 26);
    let ffmpeg = m.ffmpeg_problem.as_deref().unwrap_or("ffmpeg OK");
    text::draw_scrolling(d, ffmpeg, Point::new(0, 38), Font::Small, W, m.scroll);
}

fn token<D: DrawTarget<Color = BinaryColor>>(m: &PanelModel, d: &mut D) {
    header(d, "Web token", "");
    if m.token_revealed {
        // Long tokens wrap over two lines.
        let chars: Vec<char> = m.token.chars().collect();
        for (i, line) in chars.chunks(21).take(3).enumerate() {
            let s: String = line.iter().collect();
            body(d, &s, 0, 14 + i as i32 * 12);
        }
    } else {
        centered(d, "Hold NEXT", 18, Font::Body);
        centered(d, "to show the token", 32, Font::Small);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::panel::frame::Frame;
    use std::path::PathBuf;

    pub fn job(id: i64, drive: i64, name: &str, state: JobState, progress: f64) -> JobView {
        JobView {
            id,
            drive_id: Some(drive),
            source: PathBuf::from(format!("/media/x/{name}")),
            output: PathBuf::from(format!("/media/x/{name}.flac")),
            state,
            progress,
            error: (state == JobState::Failed).then(|| "the DTS stream is damaged".into()),
            speed: (state == JobState::Running).then_some(12.5),
            eta_seconds: None,
            duration_seconds: Some(600.0),
            profile: "DTS-HD MA".into(),
            name: name.into(),
            track: None,
            description: "DTS-HD MA 7.1 24-bit 48 kHz".into(),
            input_bytes: None,
            output_bytes: None,
            elapsed_seconds: None,
            md5: None,
            lossless: None,
            finished_at: None,
            can_cancel: crate::view::can_cancel(state),
            can_retry: crate::view::can_retry(state),
        }
    }

    pub fn drive(id: i64, label: &str, state: DriveState) -> DriveView {
        DriveView {
            id,
            device: "/dev/sda1".into(),
            label: label.into(),
            fs: "exfat".into(),
            uuid: "1234-ABCD".into(),
            state,
            mount_point: None,
            error: None,
            tracks_found: 12,
            scan: None,
            free_bytes: None,
            total_bytes: None,
            can_eject: false,
        }
    }

    pub fn model(screen: Screen, drives: Vec<DriveView>, jobs: Vec<JobView>) -> PanelModel {
        PanelModel {
            screen,
            snapshot: Snapshot {
                paused: false,
                drives,
                jobs,
                finished_jobs: 0,
                summary: Default::default(),
                totals: crate::view::Totals {
                    done: 0,
                    total: 0,
                    progress: 0.0,
                    eta_seconds: None,
                },
                box_info: crate::view::BoxInfo {
                    version: "test",
                    board: "Test board".into(),
                    cpu_temp_c: None,
                    throttled: None,
                    load: [0.0; 3],
                    ffmpeg: "test".into(),
                    uptime_seconds: 0.0,
                },
                state_dir_problem: None,
            },
            address: Some("192.168.1.50".into()),
            url: "http://192.168.1.50:8080/".into(),
            token: "K7Q2MX9PLR4TZ8W".into(),
            token_revealed: false,
            ffmpeg_problem: None,
            scroll: 0,
            notice: None,
        }
    }

    fn frame(m: &PanelModel) -> Frame {
        let mut f = Frame::default();
        render(m, &mut f);
        f
    }

    /// Filled pixels inside the progress bar.
    fn bar_fill(f: &Frame) -> usize {
        f.lit_in(2, 25, 124, 4)
    }

    #[test]
    fn the_progress_bar_follows_progress() {
        let at = |p: f64| {
            frame(&model(
                Screen::Status,
                vec![drive(1, "FILMS", DriveState::Converting)],
                vec![job(1, 1, "Film.dtshd", JobState::Running, p)],
            ))
        };
        assert_eq!(bar_fill(&at(0.0)), 0);
        let quarter = bar_fill(&at(0.25));
        let three_quarters = bar_fill(&at(0.75));
        assert_eq!(quarter, 31 * 4);
        assert_eq!(three_quarters, 93 * 4);
        assert_eq!(bar_fill(&at(1.0)), 124 * 4);
    }

    #[test]
    fn the_converting_screen_shows_name_percent_and_position() {
        let m = model(
            Screen::Status,
            vec![drive(1, "FILMS", DriveState::Converting)],
            vec![
                job(1, 1, "A.dtshd", JobState::Done, 1.0),
                job(2, 1, "B.dtshd", JobState::Done, 1.0),
                job(3, 1, "Симфония.dtshd", JobState::Running, 0.57),
                job(4, 1, "D.dtshd", JobState::Queued, 0.0),
            ],
        );
        let f = frame(&m);
        // The same texts drawn alone must appear at their places.
        let mut expect = Frame::default();
        text::draw(&mut expect, "57%", Point::new(0, 33), Font::Large);
        assert_eq!(f.lit_in(0, 33, 30, 20), expect.lit_in(0, 33, 30, 20));
        let mut name = Frame::default();
        text::draw(&mut name, "Симфония.dtshd", Point::new(0, 11), Font::Body);
        assert_eq!(f.lit_in(0, 11, 128, 10), name.lit_in(0, 11, 128, 10));
        let mut pos = Frame::default();
        right(&mut pos, "3/4", 1, Font::Small);
        // In the inverse header the position is drawn dark on lit.
        let dark_in_header = 15 * 9 - f.lit_in(113, 0, 15, 9);
        assert_eq!(dark_in_header, pos.lit_in(113, 0, 15, 9));
    }

    /// Every screen ends with the state directory's problem, drawn dark on
    /// a lit bottom line; a button's notice goes over it.
    #[test]
    fn a_state_directory_problem_is_on_the_bottom_line_of_every_screen() {
        let problem = "the state directory /var/lib/dtsflac is full: free space on the SD card";
        for screen in [Screen::Status, Screen::Queue, Screen::Network] {
            let mut m = model(screen, vec![], vec![]);
            let plain = frame(&m);
            m.snapshot.state_dir_problem = Some(problem.into());
            let warned = frame(&m);
            let mut expect = Frame::default();
            text::draw_scrolling(&mut expect, problem, Point::new(0, 56), Font::Small, W, 0);
            let dark_in_bar = 128 * 9 - warned.lit_in(0, 55, 128, 9);
            assert_eq!(dark_in_bar, expect.lit_in(0, 55, 128, 9), "{screen:?}");
            assert_ne!(plain.lit_in(0, 55, 128, 9), warned.lit_in(0, 55, 128, 9));
            m.notice = Some("paused".into());
            let noticed = frame(&m);
            let mut notice = Frame::default();
            centered(&mut notice, "paused", 56, Font::Small);
            assert_eq!(
                128 * 9 - noticed.lit_in(0, 55, 128, 9),
                notice.lit_in(0, 55, 128, 9)
            );
        }
    }

    #[test]
    fn a_scan_shows_how_far_it_has_got() {
        let mut d = drive(1, "MUSIC", DriveState::Scanning);
        d.mount_point = Some("/media/MUSIC".into());
        d.scan = Some(crate::media::scan::ScanCounts {
            files_listed: 5000,
            files_looked_at: 1234,
            tracks_found: 2,
            folder: "/media/MUSIC/Albums/Kind of Blue".into(),
        });
        let f = frame(&model(Screen::Status, vec![d], vec![]));
        let mut expect = Frame::default();
        centered(&mut expect, "1234 files, 2 DTS", 34, Font::Small);
        assert_eq!(f.lit_in(0, 33, 128, 9), expect.lit_in(0, 33, 128, 9));
        let mut folder = Frame::default();
        text::draw_scrolling(
            &mut folder,
            "Albums/Kind of Blue",
            Point::new(0, 44),
            Font::Small,
            W,
            0,
        );
        assert_eq!(f.lit_in(0, 43, 128, 9), folder.lit_in(0, 43, 128, 9));
    }

    #[test]
    fn tracks_of_one_source_are_told_apart_in_the_queue() {
        let film = "A film with a long name.mkv";
        let mut english = job(1, 1, film, JobState::Running, 0.3);
        english.track = Some("1.eng".into());
        let mut german = job(2, 1, film, JobState::Queued, 0.0);
        german.track = Some("2.ger".into());
        let f = frame(&model(
            Screen::Queue,
            vec![drive(1, "FILMS", DriveState::Converting)],
            vec![english, german],
        ));
        let mut expect = Frame::default();
        for (track, y) in [("1.eng", 11), ("2.ger", 20)] {
            let name = text::truncate(&format!("{track} {film}"), 20);
            small(&mut expect, &format!("  {name}"), 0, y);
        }
        // The marks differ ('>' and ' '): compare from the names on.
        assert_eq!(f.lit_in(12, 11, 116, 18), expect.lit_in(12, 11, 116, 18));
        assert_ne!(f.lit_in(12, 11, 116, 9), f.lit_in(12, 20, 116, 9));
    }

    fn golden_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
    }

    /// Every screen, as PNG files a reviewer can look at. Set
    /// `DTSFLAC_UPDATE_GOLDEN=1` to rewrite them after an intended change.
    #[test]
    fn screens_match_their_golden_images() {
        let mut failed_job = job(3, 1, "Broken.dts", JobState::Failed, 0.0);
        failed_job.error = Some("the DTS stream is damaged".into());
        let mut paused = model(
            Screen::Status,
            vec![drive(1, "FILMS", DriveState::Converting)],
            vec![job(1, 1, "Film.dtshd", JobState::Paused, 0.4)],
        );
        paused.snapshot.paused = true;
        let mut revealed = model(Screen::Token, vec![], vec![]);
        revealed.token_revealed = true;
        let cases: Vec<(&str, PanelModel)> = vec![
            ("idle", model(Screen::Status, vec![], vec![])),
            (
                "scanning",
                model(
                    Screen::Status,
                    vec![drive(1, "FILMS", DriveState::Scanning)],
                    vec![],
                ),
            ),
            (
                "converting",
                model(
                    Screen::Status,
                    vec![drive(1, "FILMS", DriveState::Converting)],
                    vec![
                        job(1, 1, "Живой концерт.dtshd", JobState::Running, 0.57),
                        job(2, 1, "B.dtshd", JobState::Queued, 0.0),
                    ],
                ),
            ),
            ("paused", paused),
            (
                "done",
                model(
                    Screen::Status,
                    vec![drive(1, "FILMS", DriveState::Idle)],
                    vec![
                        job(1, 1, "A.dtshd", JobState::Done, 1.0),
                        job(2, 1, "B.dtshd", JobState::Done, 1.0),
                        failed_job,
                    ],
                ),
            ),
            (
                "ejected",
                model(
                    Screen::Status,
                    vec![drive(1, "FILMS", DriveState::Ejected)],
                    vec![job(1, 1, "A.dtshd", JobState::Done, 1.0)],
                ),
            ),
            (
                "pulled",
                model(
                    Screen::Status,
                    vec![drive(1, "FILMS", DriveState::Removed)],
                    vec![job(1, 1, "A.dtshd", JobState::Interrupted, 0.0)],
                ),
            ),
            ("token-hidden", model(Screen::Token, vec![], vec![])),
            ("token", revealed),
            ("network", model(Screen::Network, vec![], vec![])),
            (
                "drives",
                model(
                    Screen::Drives,
                    vec![
                        drive(1, "FILMS", DriveState::Converting),
                        drive(2, "MUSIQUE ÉTÉ", DriveState::Idle),
                    ],
                    vec![],
                ),
            ),
            (
                "queue",
                model(
                    Screen::Queue,
                    vec![drive(1, "FILMS", DriveState::Converting)],
                    vec![
                        job(1, 1, "A.dtshd", JobState::Done, 1.0),
                        job(2, 1, "B.dtshd", JobState::Running, 0.3),
                        job(3, 1, "C.dtshd", JobState::Queued, 0.0),
                    ],
                ),
            ),
        ];
        let update = std::env::var_os("DTSFLAC_UPDATE_GOLDEN").is_some();
        std::fs::create_dir_all(golden_dir()).unwrap();
        for (name, m) in cases {
            let f = frame(&m);
            assert!(f.lit() > 20, "{name}: the screen is empty");
            let path = golden_dir().join(format!("{name}.png"));
            if update || !path.exists() {
                std::fs::write(&path, f.to_png()).unwrap();
                assert!(
                    update,
                    "{name}: wrote a missing golden image; check it and commit it"
                );
                continue;
            }
            let golden = Frame::from_png(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|| panic!("{} is not a 128x64 grey PNG", path.display()));
            assert_eq!(f, golden, "{name} differs from {}", path.display());
        }
    }
}
