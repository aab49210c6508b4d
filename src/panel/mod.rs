//! The front panel: a 128x64 OLED and three buttons. A thread renders the
//! daemon's published snapshot when it changes (at most 5 frames a second),
//! takes care of burn-in, and turns button presses (`press`) into the same
//! commands the web API sends.

pub mod buttons;
pub mod frame;
pub mod oled;
pub mod press;
pub mod screens;
pub mod text;

use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use self::buttons::{Mapping, Press};
use self::frame::Frame;
use self::oled::Display;
use self::screens::{PanelModel, Screen};
use crate::daemon::{Handle, Lifeline};
use crate::logging::log;
use crate::queue::store::JobState;
use crate::view::DriveState;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanelConfig {
    /// `auto` (the OLED when it answers on the I2C bus, else virtual),
    /// `ssd1306`, `virtual` (frames only in memory and on /panel.png).
    pub display: String,
    pub i2c_bus: String,
    pub i2c_address: u8,
    /// `auto` (Raspberry Pi GPIO when on a Pi, else virtual), `gpio`
    /// (rppal), `gpiochip:/dev/gpiochipN` (any board), `evdev:/dev/input/eventN`,
    /// `virtual` (only `POST /api/buttons/…`).
    pub buttons: String,
    /// GPIO numbers (BCM on a Pi; line offsets on a gpiochip).
    pub pin_action: u32,
    pub pin_next: u32,
    pub pin_eject: u32,
    /// Key names for `evdev` buttons.
    pub key_action: String,
    pub key_next: String,
    pub key_eject: String,
    pub debounce_ms: u64,
    pub long_press_ms: u64,
    /// Burn-in care: dim after this long without change, shift the picture
    /// when idle this long, switch the panel off when idle this long.
    pub dim_after_s: u64,
    pub shift_after_s: u64,
    pub blank_after_s: u64,
}

impl Default for PanelConfig {
    fn default() -> Self {
        PanelConfig {
            display: "auto".into(),
            i2c_bus: "/dev/i2c-1".into(),
            i2c_address: 0x3C,
            buttons: "auto".into(),
            pin_action: 17,
            pin_next: 27,
            pin_eject: 22,
            key_action: "KEY_PLAYPAUSE".into(),
            key_next: "KEY_NEXTSONG".into(),
            key_eject: "KEY_EJECTCD".into(),
            debounce_ms: 30,
            long_press_ms: 1000,
            dim_after_s: 60,
            shift_after_s: 300,
            blank_after_s: 1800,
        }
    }
}

impl PanelConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.display.as_str(), "auto" | "ssd1306" | "virtual") {
            return Err(format!(
                "`panel.display` must be \"auto\", \"ssd1306\" or \"virtual\", not {:?}",
                self.display
            ));
        }
        let b = self.buttons.as_str();
        if !(matches!(b, "auto" | "gpio" | "virtual")
            || b.starts_with("gpiochip:/")
            || b.starts_with("evdev:/"))
        {
            return Err(format!(
                "`panel.buttons` must be \"auto\", \"gpio\", \"gpiochip:/dev/gpiochipN\", \"evdev:/dev/input/eventN\" or \"virtual\", not {b:?}"
            ));
        }
        for (key, name) in [
            ("panel.key_action", &self.key_action),
            ("panel.key_next", &self.key_next),
            ("panel.key_eject", &self.key_eject),
        ] {
            if buttons::key_code(name).is_none() {
                return Err(format!(
                    "`{key}`: {name:?} is not a key name like \"KEY_PLAYPAUSE\""
                ));
            }
        }
        if self.long_press_ms <= self.debounce_ms {
            return Err("`panel.long_press_ms` must be longer than `panel.debounce_ms`".into());
        }
        Ok(())
    }
}

/// The frame on the OLED, and the same frame with the token hidden: the
/// only one anonymous web clients get.
#[derive(Default)]
struct Frames {
    shown: Frame,
    public: Frame,
}

impl Frames {
    /// Both frames of `model`: blank, or rendered and moved by `shift`.
    fn render(model: PanelModel, blanked: bool, shift: Option<(i32, i32)>) -> Frames {
        let draw = |model: &PanelModel| {
            let mut frame = Frame::default();
            if !blanked {
                screens::render(model, &mut frame);
                if let Some((dx, dy)) = shift {
                    frame = frame.shifted(dx, dy);
                }
            }
            frame
        };
        let shown = draw(&model);
        let public = match model.token_revealed {
            true => draw(&PanelModel {
                token_revealed: false,
                token: String::new(),
                ..model
            }),
            false => shown.clone(),
        };
        Frames { shown, public }
    }
}

/// What the web side uses: the current frames and a way to press buttons.
#[derive(Clone)]
pub struct PanelHandle {
    frames: Arc<Mutex<Frames>>,
    presses: mpsc::Sender<Press>,
}

impl PanelHandle {
    /// The panel as a PNG: as the OLED shows it for a client that has the
    /// token, else with a revealed token hidden again.
    pub fn png(&self, authorized: bool) -> Vec<u8> {
        let frames = self.frames.lock().unwrap();
        match authorized {
            true => frames.shown.to_png(),
            false => frames.public.to_png(),
        }
    }

    pub fn press(&self, press: Press) {
        let _ = self.presses.send(press);
    }
}

fn on_raspberry_pi() -> bool {
    std::fs::read_to_string("/proc/device-tree/model")
        .map(|m| m.contains("Raspberry Pi"))
        .unwrap_or(false)
}

fn open_display(cfg: &PanelConfig) -> Box<dyn Display> {
    match cfg.display.as_str() {
        "virtual" => Box::new(oled::VirtualDisplay),
        wanted => match oled::open_ssd1306(&cfg.i2c_bus, cfg.i2c_address) {
            Ok(d) => {
                log(&format!(
                    "OLED on {} at {:#04x}",
                    cfg.i2c_bus, cfg.i2c_address
                ));
                d
            }
            Err(e) => {
                if wanted == "ssd1306" {
                    log(&format!("{e}; showing the panel only on /panel.png"));
                }
                Box::new(oled::VirtualDisplay)
            }
        },
    }
}

/// Starts the hardware buttons chosen by the config; they feed `edges`.
/// Returns the pins rppal watches (kept alive by the panel thread) and the
/// reader thread of the other sources.
#[allow(clippy::type_complexity)]
fn start_buttons(
    cfg: &PanelConfig,
    edges: mpsc::Sender<buttons::Edge>,
    stop: buttons::Stop,
) -> Result<(Option<Vec<rppal::gpio::InputPin>>, Option<JoinHandle<()>>), String> {
    let pins = Mapping {
        action: cfg.pin_action,
        next: cfg.pin_next,
        eject: cfg.pin_eject,
    };
    let b = cfg.buttons.as_str();
    if b == "gpio" || (b == "auto" && on_raspberry_pi()) {
        let bcm =
            |p: u32| u8::try_from(p).map_err(|_| format!("GPIO {p} is not a Raspberry Pi pin"));
        let held = buttons::start_rppal(
            Mapping {
                action: bcm(pins.action)?,
                next: bcm(pins.next)?,
                eject: bcm(pins.eject)?,
            },
            edges,
        )?;
        return Ok((Some(held), None));
    }
    if let Some(chip) = b.strip_prefix("gpiochip:") {
        return Ok((
            None,
            Some(buttons::start_gpiocdev(chip, pins, edges, stop)?),
        ));
    }
    if let Some(dev) = b.strip_prefix("evdev:") {
        let code = |n: &str| buttons::key_code(n).expect("validated");
        let keys = Mapping {
            action: code(&cfg.key_action),
            next: code(&cfg.key_next),
            eject: code(&cfg.key_eject),
        };
        return Ok((None, Some(buttons::start_evdev(dev, keys, edges, stop)?)));
    }
    Ok((None, None))
}

/// The running panel: its handle for the web side and its threads.
pub struct Panel {
    pub handle: PanelHandle,
    threads: Vec<JoinHandle<()>>,
}

impl Panel {
    /// Waits for the panel's threads; they end once the lifeline stops.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the panel thread and the button sources.
pub fn start(
    daemon: Handle,
    cfg: PanelConfig,
    url: String,
    lifeline: &Arc<Lifeline>,
) -> Result<Panel, String> {
    let frames = Arc::new(Mutex::new(Frames::default()));
    let (press_tx, press_rx) = mpsc::channel();
    let (edge_tx, edge_rx) = mpsc::channel();
    let stop: buttons::Stop = {
        let l = lifeline.clone();
        Arc::new(move || l.stopping())
    };
    let mut threads = Vec::new();
    let held_pins = match start_buttons(&cfg, edge_tx, stop) {
        Ok((pins, reader)) => {
            threads.extend(reader);
            pins
        }
        Err(e) => {
            log(&format!("buttons: {e}; use POST /api/buttons/... instead"));
            None
        }
    };
    let spawn_err = |e: std::io::Error| format!("cannot start the panel: {e}");
    {
        let presses = press_tx.clone();
        let (debounce, long) = (
            Duration::from_millis(cfg.debounce_ms),
            Duration::from_millis(cfg.long_press_ms),
        );
        threads.push(
            lifeline
                .spawn("buttons", move || {
                    buttons::run_detector(edge_rx, presses, debounce, long)
                })
                .map_err(spawn_err)?,
        );
    }
    let shared = frames.clone();
    let stopping = lifeline.clone();
    threads.push(
        lifeline
            .spawn("panel", move || {
                let _pins = held_pins; // keep the GPIO interrupts alive
                let display = open_display(&cfg);
                PanelLoop::new(daemon, cfg, url, display, shared).run(press_rx, &stopping)
            })
            .map_err(spawn_err)?,
    );
    Ok(Panel {
        handle: PanelHandle {
            frames,
            presses: press_tx,
        },
        threads,
    })
}

struct PanelLoop {
    daemon: Handle,
    cfg: PanelConfig,
    url: String,
    display: Box<dyn Display>,
    shared: Arc<Mutex<Frames>>,
    screen: Screen,
    token_revealed: bool,
    notice: Option<(String, Instant)>,
    scroll: u32,
    shown: Option<Frame>,
    last_change: Instant,
    idle_since: Option<Instant>,
    dimmed: bool,
    blanked: bool,
    last_model_key: String,
    /// The published snapshot, and what of it the panel shows (drives,
    /// jobs, pause), worked out once per publication rather than per frame.
    status: tokio::sync::watch::Receiver<Arc<crate::view::Published>>,
    shown_work: u64,
    /// The LAN address, looked up every few seconds rather than every frame.
    address: (Option<String>, Instant),
}

impl PanelLoop {
    fn new(
        daemon: Handle,
        cfg: PanelConfig,
        url: String,
        display: Box<dyn Display>,
        shared: Arc<Mutex<Frames>>,
    ) -> Self {
        PanelLoop {
            cfg,
            url,
            display,
            shared,
            screen: Screen::Status,
            token_revealed: false,
            notice: None,
            scroll: 0,
            shown: None,
            last_change: Instant::now(),
            idle_since: None,
            dimmed: false,
            blanked: false,
            last_model_key: String::new(),
            status: daemon.watch(),
            shown_work: 0,
            address: (local_address(), Instant::now()),
            daemon,
        }
    }

    fn run(mut self, presses: mpsc::Receiver<Press>, lifeline: &Lifeline) {
        let tick = Duration::from_millis(200);
        while !lifeline.stopping() {
            match presses.recv_timeout(tick) {
                Ok(p) => self.on_press(p),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            self.refresh();
        }
    }

    fn model(&mut self) -> PanelModel {
        if self.address.1.elapsed() > Duration::from_secs(10) {
            self.address = (local_address(), Instant::now());
        }
        if self.shown_work == 0 || self.status.has_changed().unwrap_or(false) {
            use std::hash::{Hash, Hasher};
            let s = &self.status.borrow_and_update().snapshot;
            // Board readings (temperature, load) are not news for the panel.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            s.paused.hash(&mut h);
            serde_json::to_string(&s.drives)
                .unwrap_or_default()
                .hash(&mut h);
            serde_json::to_string(&s.jobs)
                .unwrap_or_default()
                .hash(&mut h);
            self.shown_work = h.finish() | 1;
        }
        PanelModel {
            screen: self.screen,
            snapshot: self.status.borrow().snapshot.clone(),
            address: self.address.0.clone(),
            url: self.url.clone(),
            token: self.daemon.token.to_string(),
            token_revealed: self.token_revealed,
            ffmpeg_problem: None,
            scroll: self.scroll,
            notice: self.notice.as_ref().map(|(n, _)| n.clone()),
        }
    }
    fn refresh(&mut self) {
        let now = Instant::now();
        if self
            .notice
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) > Duration::from_secs(2))
        {
            self.notice = None;
        }
        let mut model = self.model();
        // What the screen means, without the marquee: its changes wake the panel.
        // Board readings (temperature, load) are not news for the panel.
        let key = format!(
            "{:?}|{}|{:?}|{}",
            model.screen, self.shown_work, model.notice, model.token_revealed
        );
        if key != self.last_model_key {
            self.last_model_key = key;
            self.wake(now);
        }
        let idle = model.snapshot.drives.iter().all(|d| {
            matches!(
                d.state,
                DriveState::Ejected | DriveState::Removed | DriveState::Idle
            )
        }) && !model
            .snapshot
            .jobs
            .iter()
            .any(|j| j.state == JobState::Running);
        if !idle {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        let idle_for = self
            .idle_since
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        let quiet_for = now.duration_since(self.last_change);

        let should_blank = idle_for >= Duration::from_secs(self.cfg.blank_after_s)
            && quiet_for >= Duration::from_secs(self.cfg.blank_after_s);
        if should_blank != self.blanked {
            self.blanked = should_blank;
            if let Err(e) = self.display.set_on(!should_blank) {
                log(&e);
            }
        }
        let should_dim = quiet_for >= Duration::from_secs(self.cfg.dim_after_s);
        if should_dim != self.dimmed {
            self.dimmed = should_dim;
            if let Err(e) = self.display.set_dim(should_dim) {
                log(&e);
            }
        }

        self.scroll = self.scroll.wrapping_add(4);
        model.scroll = self.scroll;
        let shift = (idle_for >= Duration::from_secs(self.cfg.shift_after_s)).then(|| {
            // Move the picture around a little, once a minute.
            let step = (idle_for.as_secs() / 60) as i32;
            (step % 5 - 2, (step / 5) % 3 - 1)
        });
        let frames = Frames::render(model, self.blanked, shift);
        if self.shown.as_ref() != Some(&frames.shown) {
            if let Err(e) = self.display.show(&frames.shown) {
                log(&e);
            }
            self.shown = Some(frames.shown.clone());
            *self.shared.lock().unwrap() = frames;
        }
    }

    fn wake(&mut self, now: Instant) {
        self.last_change = now;
    }

    fn notice(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), Instant::now()));
    }

    fn on_press(&mut self, p: Press) {
        let asleep = self.blanked;
        self.wake(Instant::now());
        if asleep {
            // The first press only wakes the screen.
            self.idle_since = None;
            return;
        }
        let snapshot = self.daemon.snapshot();
        let outcome = press::on_press(p, self.screen, self.token_revealed, &snapshot);
        if let Some(n) = outcome.notice {
            self.notice(n);
        }
        self.screen = outcome.screen;
        self.token_revealed = outcome.token_revealed;
        for command in outcome.commands {
            if let Err(e) = self.daemon.command_blocking(command) {
                self.notice(e.to_string());
                break;
            }
        }
    }
}

/// The box's first IPv4 address on a real interface, for the idle screen.
pub fn local_address() -> Option<String> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below; we only read it.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = addrs;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
            let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
            if up
                && !loopback
                && !ifa.ifa_addr.is_null()
                && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                found = Some(ip.to_string());
                break;
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(addrs);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_frame_never_shows_the_token() {
        let hidden = screens::tests::model(Screen::Token, vec![], vec![]);
        let mut revealed = hidden.clone();
        revealed.token_revealed = true;
        for shift in [None, Some((2, -1))] {
            let f = Frames::render(revealed.clone(), false, shift);
            let h = Frames::render(hidden.clone(), false, shift);
            assert!(f.shown != h.shown, "the OLED shows the token");
            assert!(f.public == h.shown, "the public frame is the hidden screen");
        }
        // Other screens are the same for everyone.
        let status = screens::tests::model(Screen::Status, vec![], vec![]);
        let f = Frames::render(status, false, None);
        assert!(f.public == f.shown);
        let f = Frames::render(revealed, true, None);
        assert!(f.public == Frame::default() && f.shown == Frame::default());
    }
}
