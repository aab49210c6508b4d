//! Text in any script the OLED can show. embedded-graphics' mono fonts are
//! split by ISO 8859 part (Latin-1, Latin-2, Cyrillic, Greek, …), all with
//! the same cell size, so each character is drawn with the first font that
//! has it: "Симфония № 9 — Été" renders, where one font would show "?".

use embedded_graphics::mono_font::{self, MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};

/// Font sizes used by the screens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 6x10: names, headings.
    Body,
    /// 5x8: details.
    Small,
    /// 10x20: the big number (percent).
    Large,
}

impl Size {
    pub fn cell(self) -> (i32, i32) {
        match self {
            Size::Body => (6, 10),
            Size::Small => (5, 8),
            Size::Large => (10, 20),
        }
    }
}

macro_rules! families {
    ($size:ident) => {
        [
            &mono_font::iso_8859_1::$size,
            &mono_font::iso_8859_15::$size,
            &mono_font::iso_8859_2::$size,
            &mono_font::iso_8859_5::$size,
            &mono_font::iso_8859_7::$size,
            &mono_font::iso_8859_9::$size,
            &mono_font::iso_8859_13::$size,
            &mono_font::iso_8859_4::$size,
            &mono_font::iso_8859_10::$size,
            &mono_font::iso_8859_14::$size,
            &mono_font::iso_8859_16::$size,
            &mono_font::iso_8859_3::$size,
        ]
    };
}

static BODY: [&MonoFont<'static>; 12] = families!(FONT_6X10);
static SMALL: [&MonoFont<'static>; 12] = families!(FONT_5X8);
static LARGE: [&MonoFont<'static>; 12] = families!(FONT_10X20);

fn fonts(size: Size) -> &'static [&'static MonoFont<'static>; 12] {
    match size {
        Size::Body => &BODY,
        Size::Small => &SMALL,
        Size::Large => &LARGE,
    }
}

fn has_glyph(font: &MonoFont<'_>, c: char) -> bool {
    // Unknown characters map to the replacement glyph's index.
    c == '?' || font.glyph_mapping.index(c) != font.glyph_mapping.index('\u{10FFFF}')
}

/// Typographic look-alikes the ISO fonts lack.
fn fallback(c: char) -> char {
    match c {
        '—' | '–' | '‐' | '−' => '-',
        '‘' | '’' | '‚' => '\'',
        '“' | '”' | '„' => '"',
        '…' => '.',
        '×' => 'x',
        _ => '?',
    }
}

/// The font that draws `c` (or its fallback).
fn font_for(size: Size, c: char) -> (&'static MonoFont<'static>, char) {
    let set = fonts(size);
    if let Some(f) = set.iter().find(|f| has_glyph(f, c)) {
        return (f, c);
    }
    let alt = fallback(c);
    if alt != '?' {
        if let Some(f) = set.iter().find(|f| has_glyph(f, alt)) {
            return (f, alt);
        }
    }
    (set[0], '?')
}

/// Width in pixels of `text` at `size`.
pub fn width(text: &str, size: Size) -> i32 {
    text.chars().count() as i32 * size.cell().0
}

/// Draws `text` with its top-left corner at `at`; returns the x after it.
pub fn draw<D>(target: &mut D, text: &str, at: Point, size: Size) -> i32
where
    D: DrawTarget<Color = BinaryColor>,
{
    let (w, _) = size.cell();
    let mut x = at.x;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let (font, c) = font_for(size, c);
        let style = MonoTextStyle::new(font, BinaryColor::On);
        let s = c.encode_utf8(&mut buf);
        let _ = Text::with_baseline(s, Point::new(x, at.y), style, Baseline::Top).draw(target);
        x += w;
    }
    x
}

/// Draws `text` clipped to `max_width`, scrolled left by `scroll` pixels
/// when it is too long (a marquee: the caller advances `scroll`).
pub fn draw_scrolling<D>(
    target: &mut D,
    text: &str,
    at: Point,
    size: Size,
    max_width: i32,
    scroll: u32,
) where
    D: DrawTarget<Color = BinaryColor>,
{
    let full = width(text, size);
    if full <= max_width {
        draw(target, text, at, size);
        return;
    }
    // Loop: the text, a gap, then the text again.
    let gap = 3 * size.cell().0;
    let period = (full + gap) as u32;
    let offset = (scroll % period) as i32;
    let area = embedded_graphics::primitives::Rectangle::new(
        at,
        embedded_graphics::geometry::Size::new(max_width as u32, size.cell().1 as u32),
    );
    let mut clipped = target.clipped(&area);
    draw(&mut clipped, text, Point::new(at.x - offset, at.y), size);
    draw(
        &mut clipped,
        text,
        Point::new(at.x - offset + full + gap, at.y),
        size,
    );
}

/// Shortens `text` to `max_chars` with an ellipsis-like "~".
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        s.push('~');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel::frame::Frame;

    #[test]
    fn cyrillic_greek_and_accents_render_as_glyphs_not_question_marks() {
        for word in ["Симфония", "Ωμέγα", "Été", "Dvořák"] {
            let mut real = Frame::default();
            draw(&mut real, word, Point::zero(), Size::Body);
            let mut unknown = Frame::default();
            draw(
                &mut unknown,
                &"?".repeat(word.chars().count()),
                Point::zero(),
                Size::Body,
            );
            assert_ne!(real, unknown, "{word} rendered as question marks");
            assert!(real.lit() > 10, "{word} drew nothing");
        }
    }

    #[test]
    fn long_text_scrolls_within_its_box() {
        let text = "A very long track name that does not fit on the screen.dtshd";
        let mut a = Frame::default();
        draw_scrolling(&mut a, text, Point::new(0, 0), Size::Body, 128, 0);
        let mut b = Frame::default();
        draw_scrolling(&mut b, text, Point::new(0, 0), Size::Body, 128, 30);
        assert_ne!(a, b, "scrolling did not move the text");
        assert_eq!(a.lit_in(0, 10, 128, 54), 0, "text spilled out of its line");
    }
}
