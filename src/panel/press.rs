//! What a button press means: a pure function from the press, the screen
//! shown and the box's snapshot to the commands to send and what the panel
//! shows next. The panel thread only carries out what this decides.

use super::buttons::{Button, Press};
use super::screens::{focus_drive, Screen};
use crate::daemon::Command;
use crate::view::Snapshot;

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub commands: Vec<Command>,
    /// A line shown for two seconds ("Paused", "Ejecting FILMS").
    pub notice: Option<String>,
    pub screen: Screen,
    pub token_revealed: bool,
}

pub fn on_press(press: Press, screen: Screen, token_revealed: bool, s: &Snapshot) -> Outcome {
    let mut out = Outcome {
        commands: Vec::new(),
        notice: None,
        screen,
        token_revealed,
    };
    match (press.button, press.long) {
        (Button::Action, false) if s.paused => {
            out.notice = Some("Resumed".into());
            out.commands.push(Command::Resume);
        }
        (Button::Action, false) => {
            out.notice = Some("Paused".into());
            out.commands.push(Command::Pause);
        }
        (Button::Action, true) => match s.current_job() {
            Some(j) => {
                out.notice = Some("Cancelled".into());
                out.commands.push(Command::Cancel(j.id));
            }
            None => out.notice = Some("Nothing to cancel".into()),
        },
        (Button::Next, false) => {
            out.screen = screen.next();
            out.token_revealed = false;
        }
        (Button::Next, true) if screen == Screen::Token => out.token_revealed = true,
        (Button::Next, true) => {
            let failed = s.summary.count(crate::queue::store::JobState::Failed);
            out.notice = Some(format!("Retrying {failed} job(s)"));
            out.commands.push(Command::RetryFailed);
        }
        (Button::Eject, long) => {
            let chosen: Vec<(i64, String)> = if long {
                s.ejectable_drives()
                    .map(|d| (d.id, d.label.clone()))
                    .collect()
            } else {
                // The drive on the status screen, or the only one.
                focus_drive(s)
                    .filter(|d| d.can_eject)
                    .map(|d| vec![(d.id, d.label.clone())])
                    .unwrap_or_default()
            };
            if chosen.is_empty() {
                out.notice = Some("Nothing to eject".into());
            } else {
                let names: Vec<&str> = chosen.iter().map(|(_, l)| l.as_str()).collect();
                out.notice = Some(format!("Ejecting {}", names.join(", ")));
                out.commands = if long {
                    vec![Command::EjectAll]
                } else {
                    vec![Command::Eject(chosen[0].0)]
                };
            }
        }
    }
    if out.screen == Screen::Token && press.button != Button::Next {
        out.screen = Screen::Status;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel::screens::tests::{drive, job, model};
    use crate::queue::store::JobState;
    use crate::view::DriveState;

    fn press(button: Button, long: bool) -> Press {
        Press { button, long }
    }

    /// A snapshot as the supervisor makes it (allowed actions filled in).
    fn snapshot(drives: Vec<crate::view::DriveView>, jobs: Vec<crate::view::JobView>) -> Snapshot {
        let m = model(Screen::Status, drives, jobs);
        let s = m.snapshot;
        let mut summary = s.summary.clone();
        for j in &s.jobs {
            *summary.jobs.entry(j.state).or_default() += 1;
        }
        Snapshot::new(s.paused, s.drives, s.jobs, summary, 1, s.box_info)
    }

    fn mounted(id: i64, label: &str, state: DriveState) -> crate::view::DriveView {
        let mut d = drive(id, label, state);
        d.mount_point = Some(format!("/media/dtsflac/{label}").into());
        d
    }

    #[test]
    fn action_pauses_resumes_and_cancels_the_running_job() {
        let mut s = snapshot(
            vec![mounted(1, "FILMS", DriveState::Converting)],
            vec![
                job(7, 1, "a.dts", JobState::Done, 1.0),
                job(8, 1, "b.dts", JobState::Running, 0.4),
            ],
        );
        let o = on_press(press(Button::Action, false), Screen::Status, false, &s);
        assert_eq!(o.commands, vec![Command::Pause]);
        assert_eq!(o.notice.as_deref(), Some("Paused"));
        s.paused = true;
        let o = on_press(press(Button::Action, false), Screen::Queue, false, &s);
        assert_eq!(o.commands, vec![Command::Resume]);
        assert_eq!(o.screen, Screen::Queue);
        let o = on_press(press(Button::Action, true), Screen::Status, false, &s);
        assert_eq!(o.commands, vec![Command::Cancel(8)]);
        let idle = snapshot(vec![], vec![job(7, 1, "a.dts", JobState::Done, 1.0)]);
        let o = on_press(press(Button::Action, true), Screen::Status, false, &idle);
        assert!(o.commands.is_empty());
        assert_eq!(o.notice.as_deref(), Some("Nothing to cancel"));
    }

    #[test]
    fn next_walks_the_screens_and_long_next_reveals_the_token_or_retries() {
        let s = snapshot(
            vec![mounted(1, "FILMS", DriveState::Idle)],
            vec![
                job(1, 1, "a.dts", JobState::Failed, 0.0),
                job(2, 1, "b.dts", JobState::Failed, 0.0),
            ],
        );
        let o = on_press(press(Button::Next, false), Screen::Network, false, &s);
        assert_eq!((o.screen, o.token_revealed), (Screen::Token, false));
        let o = on_press(press(Button::Next, true), Screen::Token, false, &s);
        assert!(o.token_revealed && o.commands.is_empty());
        let o = on_press(press(Button::Next, false), Screen::Token, true, &s);
        assert_eq!((o.screen, o.token_revealed), (Screen::Status, false));
        let o = on_press(press(Button::Next, true), Screen::Status, false, &s);
        assert_eq!(o.commands, vec![Command::RetryFailed]);
        assert_eq!(o.notice.as_deref(), Some("Retrying 2 job(s)"));
        // Any other button leaves the token screen.
        let o = on_press(press(Button::Action, false), Screen::Token, true, &s);
        assert_eq!(o.screen, Screen::Status);
    }

    #[test]
    fn eject_takes_the_drive_shown_and_long_eject_takes_all() {
        let s = snapshot(
            vec![
                mounted(1, "FILMS", DriveState::Converting),
                mounted(2, "MUSIC", DriveState::Idle),
                drive(3, "GONE", DriveState::Removed),
            ],
            vec![job(5, 1, "a.dts", JobState::Running, 0.2)],
        );
        let o = on_press(press(Button::Eject, false), Screen::Status, false, &s);
        assert_eq!(o.commands, vec![Command::Eject(1)]);
        assert_eq!(o.notice.as_deref(), Some("Ejecting FILMS"));
        let o = on_press(press(Button::Eject, true), Screen::Drives, false, &s);
        assert_eq!(o.commands, vec![Command::EjectAll]);
        assert_eq!(o.notice.as_deref(), Some("Ejecting FILMS, MUSIC"));
        let none = snapshot(vec![drive(3, "GONE", DriveState::Ejected)], vec![]);
        let o = on_press(press(Button::Eject, false), Screen::Status, false, &none);
        assert!(o.commands.is_empty());
        assert_eq!(o.notice.as_deref(), Some("Nothing to eject"));
    }
}
