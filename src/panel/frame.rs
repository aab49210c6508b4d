//! One 128x64 monochrome frame: what the OLED shows. Screens draw into it
//! (it is an embedded-graphics `DrawTarget`), the OLED driver copies it to
//! the panel, and `/panel.png` serves it.

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;

pub const WIDTH: u32 = 128;
pub const HEIGHT: u32 = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// One bool per pixel, row by row; `true` is lit.
    pixels: Vec<bool>,
}

impl Default for Frame {
    fn default() -> Self {
        Frame {
            pixels: vec![false; (WIDTH * HEIGHT) as usize],
        }
    }
}

impl std::fmt::Debug for Frame {
    /// ASCII art, so a failing test shows the screen.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for y in 0..HEIGHT {
            let row: String = (0..WIDTH)
                .map(|x| if self.pixel(x, y) { '#' } else { '.' })
                .collect();
            writeln!(f, "{row}")?;
        }
        Ok(())
    }
}

impl Frame {
    pub fn pixel(&self, x: u32, y: u32) -> bool {
        x < WIDTH && y < HEIGHT && self.pixels[(y * WIDTH + x) as usize]
    }

    pub fn set(&mut self, x: u32, y: u32, on: bool) {
        if x < WIDTH && y < HEIGHT {
            self.pixels[(y * WIDTH + x) as usize] = on;
        }
    }

    pub fn lit(&self) -> usize {
        self.pixels.iter().filter(|p| **p).count()
    }

    /// Lit pixels in a rectangle (for tests of what matters on a screen).
    pub fn lit_in(&self, x0: u32, y0: u32, w: u32, h: u32) -> usize {
        (y0..y0 + h)
            .flat_map(|y| (x0..x0 + w).map(move |x| (x, y)))
            .filter(|(x, y)| self.pixel(*x, *y))
            .count()
    }

    /// A copy moved by (dx, dy), for burn-in care.
    pub fn shifted(&self, dx: i32, dy: i32) -> Frame {
        let mut out = Frame::default();
        for y in 0..HEIGHT as i32 {
            for x in 0..WIDTH as i32 {
                if self.pixel(x as u32, y as u32) {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx >= 0 && ny >= 0 {
                        out.set(nx as u32, ny as u32, true);
                    }
                }
            }
        }
        out
    }

    /// PNG, 8-bit grey, lit pixels white on black as on the OLED.
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("PNG header to memory");
            let data: Vec<u8> = self
                .pixels
                .iter()
                .map(|p| if *p { 255 } else { 0 })
                .collect();
            w.write_image_data(&data).expect("PNG data to memory");
        }
        out
    }

    /// Reads a PNG written by `to_png` (golden images in tests).
    pub fn from_png(bytes: &[u8]) -> Option<Frame> {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().ok()?;
        let mut buf = vec![0; reader.output_buffer_size()?];
        let info = reader.next_frame(&mut buf).ok()?;
        if info.width != WIDTH
            || info.height != HEIGHT
            || info.color_type != png::ColorType::Grayscale
        {
            return None;
        }
        let mut f = Frame::default();
        for (i, v) in buf[..info.buffer_size()].iter().enumerate() {
            f.pixels[i] = *v >= 128;
        }
        Some(f)
    }
}

impl OriginDimensions for Frame {
    fn size(&self) -> Size {
        Size::new(WIDTH, HEIGHT)
    }
}

impl DrawTarget for Frame {
    type Color = BinaryColor;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 {
                self.set(p.x as u32, p.y as u32, c.is_on());
            }
        }
        Ok(())
    }
}
