//! Front-panel buttons: raw edges from whichever source the board has
//! (rppal on a Raspberry Pi, any board's GPIO character device through
//! gpiocdev, key events from an evdev device), turned into short and long
//! presses by one debouncing state machine, so every source behaves alike.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tells a button reader that the daemon is stopping.
pub type Stop = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a reader waiting for a press looks whether to stop.
const SOURCE_POLL: Duration = Duration::from_millis(200);

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Button {
    /// Pause / resume; long: cancel the current job.
    Action,
    /// Next screen; long: retry failed jobs (on the token screen: show it).
    Next,
    /// Eject the drive shown; long: eject every drive.
    Eject,
}

impl Button {
    pub fn parse(s: &str) -> Option<Button> {
        match s {
            "action" => Some(Button::Action),
            "next" => Some(Button::Next),
            "eject" => Some(Button::Eject),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Press {
    pub button: Button,
    pub long: bool,
}

/// A raw level change: pressed or released, when.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub button: Button,
    pub pressed: bool,
    pub at: Instant,
}

struct Line {
    raw: bool,
    raw_since: Instant,
    stable: bool,
    pressed_at: Option<Instant>,
    long_sent: bool,
}

/// Debounce (a level counts once it has held for `debounce`) and long-press
/// detection (fired while still held, so the user feels it at once).
pub struct PressDetector {
    debounce: Duration,
    long: Duration,
    lines: HashMap<Button, Line>,
}

impl PressDetector {
    pub fn new(debounce: Duration, long: Duration) -> Self {
        PressDetector {
            debounce,
            long,
            lines: HashMap::new(),
        }
    }

    pub fn edge(&mut self, e: Edge) -> Vec<Press> {
        let line = self.lines.entry(e.button).or_insert(Line {
            raw: false,
            raw_since: e.at,
            stable: false,
            pressed_at: None,
            long_sent: false,
        });
        // Settle what was pending before this edge, then take the new level.
        let mut out = Vec::new();
        Self::settle(e.button, line, e.at, self.debounce, self.long, &mut out);
        if e.pressed != line.raw {
            line.raw = e.pressed;
            line.raw_since = e.at;
        }
        out
    }

    /// Call regularly (every few milliseconds while anything is pending).
    pub fn poll(&mut self, now: Instant) -> Vec<Press> {
        let mut out = Vec::new();
        for (b, line) in self.lines.iter_mut() {
            Self::settle(*b, line, now, self.debounce, self.long, &mut out);
        }
        out
    }

    fn settle(
        button: Button,
        line: &mut Line,
        now: Instant,
        debounce: Duration,
        long: Duration,
        out: &mut Vec<Press>,
    ) {
        if line.raw != line.stable && now.duration_since(line.raw_since) >= debounce {
            line.stable = line.raw;
            if line.stable {
                line.pressed_at = Some(line.raw_since);
                line.long_sent = false;
            } else {
                if line.pressed_at.is_some() && !line.long_sent {
                    out.push(Press {
                        button,
                        long: false,
                    });
                }
                line.pressed_at = None;
            }
        }
        if let Some(t) = line.pressed_at {
            if line.stable && !line.long_sent && now.duration_since(t) >= long {
                line.long_sent = true;
                out.push(Press { button, long: true });
            }
        }
    }
}

/// Runs the detector over edges from `edges` and sends presses to `presses`.
pub fn run_detector(
    edges: mpsc::Receiver<Edge>,
    presses: mpsc::Sender<Press>,
    debounce: Duration,
    long: Duration,
) {
    let mut d = PressDetector::new(debounce, long);
    loop {
        let got = edges.recv_timeout(Duration::from_millis(5));
        let out = match got {
            Ok(e) => d.edge(e),
            Err(mpsc::RecvTimeoutError::Timeout) => d.poll(Instant::now()),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        for p in out {
            if presses.send(p).is_err() {
                return;
            }
        }
    }
}

/// Which pin or key is which button.
#[derive(Debug, Clone)]
pub struct Mapping<T> {
    pub action: T,
    pub next: T,
    pub eject: T,
}

impl<T: PartialEq + Copy> Mapping<T> {
    fn button_of(&self, v: T) -> Option<Button> {
        if v == self.action {
            Some(Button::Action)
        } else if v == self.next {
            Some(Button::Next)
        } else if v == self.eject {
            Some(Button::Eject)
        } else {
            None
        }
    }

    fn all(&self) -> [T; 3] {
        [self.action, self.next, self.eject]
    }
}

/// Raspberry Pi GPIO through rppal (edge interrupts on BCM pins, buttons
/// to ground with the internal pull-ups).
pub fn start_rppal(
    pins: Mapping<u8>,
    edges: mpsc::Sender<Edge>,
) -> Result<Vec<rppal::gpio::InputPin>, String> {
    let gpio =
        rppal::gpio::Gpio::new().map_err(|e| format!("cannot open the Raspberry Pi GPIO: {e}"))?;
    let mut held = Vec::new();
    for pin in pins.all() {
        let button = pins.button_of(pin).expect("a mapped pin");
        let mut input = gpio
            .get(pin)
            .map_err(|e| format!("GPIO {pin} ({button:?} button): {e}"))?
            .into_input_pullup();
        let tx = edges.clone();
        input
            .set_async_interrupt(rppal::gpio::Trigger::Both, None, move |event| {
                let pressed = event.trigger == rppal::gpio::Trigger::FallingEdge;
                let _ = tx.send(Edge {
                    button,
                    pressed,
                    at: Instant::now(),
                });
            })
            .map_err(|e| format!("GPIO {pin}: cannot watch it: {e}"))?;
        held.push(input);
    }
    Ok(held)
}

/// Any board's GPIO character device (`/dev/gpiochipN`) through gpiocdev,
/// with the kernel's debounce and pull-ups; buttons pull the line low.
pub fn start_gpiocdev(
    chip: &str,
    lines: Mapping<u32>,
    edges: mpsc::Sender<Edge>,
    stop: Stop,
) -> Result<JoinHandle<()>, String> {
    let req = gpiocdev::Request::builder()
        .on_chip(chip)
        .with_consumer("dtsflac")
        .with_lines(&lines.all())
        .as_input()
        .as_active_low()
        .with_bias(gpiocdev::line::Bias::PullUp)
        .with_edge_detection(gpiocdev::line::EdgeDetection::BothEdges)
        .with_debounce_period(Duration::from_millis(5))
        .request()
        .map_err(|e| format!("cannot request GPIO lines {:?} on {chip}: {e}", lines.all()))?;
    std::thread::Builder::new()
        .name("gpio-buttons".into())
        .spawn(move || {
            while !stop() {
                match req.wait_edge_event(SOURCE_POLL) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        crate::logging::log(&format!("GPIO buttons stopped: {e}"));
                        return;
                    }
                }
                match req.read_edge_event() {
                    Ok(ev) => {
                        if let Some(button) = lines.button_of(ev.offset) {
                            let pressed = ev.kind == gpiocdev::line::EdgeKind::Rising;
                            let edge = Edge {
                                button,
                                pressed,
                                at: Instant::now(),
                            };
                            if edges.send(edge).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        crate::logging::log(&format!("GPIO buttons stopped: {e}"));
                        return;
                    }
                }
            }
        })
        .map_err(|e| e.to_string())
}

/// Key events from an evdev device: the kernel's `gpio-keys` overlay or a
/// USB keypad. Keys are named as in linux/input-event-codes.h.
pub fn start_evdev(
    path: &str,
    keys: Mapping<u16>,
    edges: mpsc::Sender<Edge>,
    stop: Stop,
) -> Result<JoinHandle<()>, String> {
    let mut device = evdev::Device::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    std::thread::Builder::new()
        .name("evdev-buttons".into())
        .spawn(move || {
            while !stop() {
                if !readable(&device, SOURCE_POLL) {
                    continue;
                }
                let events = match device.fetch_events() {
                    Ok(ev) => ev.collect::<Vec<_>>(),
                    Err(e) => {
                        crate::logging::log(&format!("key events stopped: {e}"));
                        return;
                    }
                };
                for ev in events {
                    if ev.event_type() != evdev::EventType::KEY || ev.value() == 2 {
                        continue; // not a key, or auto-repeat
                    }
                    if let Some(button) = keys.button_of(ev.code()) {
                        let _ = edges.send(Edge {
                            button,
                            pressed: ev.value() == 1,
                            at: Instant::now(),
                        });
                    }
                }
            }
        })
        .map_err(|e| e.to_string())
}

/// Waits up to `timeout` for the device to have events, so the reader
/// thread can see the daemon stopping.
fn readable(device: &impl std::os::fd::AsRawFd, timeout: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: device.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 }
}

/// A key name (`KEY_PLAYPAUSE`) to its code.
pub fn key_code(name: &str) -> Option<u16> {
    name.parse::<evdev::KeyCode>().ok().map(|k| k.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    fn feed(
        d: &mut PressDetector,
        base: Instant,
        timeline: &[(u64, bool)],
        until: u64,
    ) -> Vec<Press> {
        let mut out = Vec::new();
        let mut events = timeline.iter().peekable();
        for t in 0..=until {
            while let Some((at, pressed)) = events.peek() {
                if *at != t {
                    break;
                }
                out.extend(d.edge(Edge {
                    button: Button::Action,
                    pressed: *pressed,
                    at: ms(base, t),
                }));
                events.next();
            }
            out.extend(d.poll(ms(base, t)));
        }
        out
    }

    fn detector() -> PressDetector {
        PressDetector::new(Duration::from_millis(30), Duration::from_millis(1000))
    }

    const SHORT: Press = Press {
        button: Button::Action,
        long: false,
    };
    const LONG: Press = Press {
        button: Button::Action,
        long: true,
    };

    #[test]
    fn a_bouncy_short_press_counts_once() {
        let bounces = [
            (100, true),
            (102, false),
            (104, true),
            (107, false),
            (109, true),
            (300, false),
            (302, true),
            (303, false),
        ];
        assert_eq!(
            feed(&mut detector(), Instant::now(), &bounces, 600),
            vec![SHORT]
        );
    }

    #[test]
    fn a_long_press_fires_while_held_and_not_again_on_release() {
        let timeline = [(100, true), (1500, false)];
        let out = feed(&mut detector(), Instant::now(), &timeline, 2000);
        assert_eq!(out, vec![LONG]);
    }

    #[test]
    fn a_glitch_shorter_than_the_debounce_time_is_ignored() {
        let timeline = [(100, true), (110, false)];
        assert!(feed(&mut detector(), Instant::now(), &timeline, 500).is_empty());
    }

    #[test]
    fn just_under_the_long_time_is_still_short() {
        let timeline = [(0, true), (950, false)];
        assert_eq!(
            feed(&mut detector(), Instant::now(), &timeline, 1500),
            vec![SHORT]
        );
    }

    #[test]
    fn key_names_resolve() {
        assert_eq!(key_code("KEY_PLAYPAUSE"), Some(164));
        assert_eq!(key_code("KEY_NOPE"), None);
    }
}
