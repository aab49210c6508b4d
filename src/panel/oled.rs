//! Where frames go: the real SSD1306 over I2C (the `ssd1306` driver on
//! linux-embedded-hal), or a virtual panel that only keeps the frame (demo,
//! CI, any laptop; `/panel.png` serves the frame either way).

use ssd1306::mode::BufferedGraphicsMode;
use ssd1306::prelude::*;
use ssd1306::size::DisplaySize128x64;
use ssd1306::{I2CDisplayInterface, Ssd1306};

use super::frame::{Frame, HEIGHT, WIDTH};

pub trait Display: Send {
    fn show(&mut self, frame: &Frame) -> Result<(), String>;
    /// Low contrast after a while without change (burn-in care).
    fn set_dim(&mut self, dim: bool) -> Result<(), String>;
    /// Panel off entirely after a long idle time.
    fn set_on(&mut self, on: bool) -> Result<(), String>;
}

/// No hardware: the frame only lives in memory.
#[derive(Default)]
pub struct VirtualDisplay;

impl Display for VirtualDisplay {
    fn show(&mut self, _: &Frame) -> Result<(), String> {
        Ok(())
    }
    fn set_dim(&mut self, _: bool) -> Result<(), String> {
        Ok(())
    }
    fn set_on(&mut self, _: bool) -> Result<(), String> {
        Ok(())
    }
}

pub struct Ssd1306Display<I2C> {
    driver: Ssd1306<I2CInterface<I2C>, DisplaySize128x64, BufferedGraphicsMode<DisplaySize128x64>>,
}

impl<I2C: embedded_hal::i2c::I2c> Ssd1306Display<I2C> {
    pub fn new(i2c: I2C, address: u8) -> Result<Self, String> {
        let interface = I2CDisplayInterface::new_custom_address(i2c, address);
        let mut driver = Ssd1306::new(interface, DisplaySize128x64, DisplayRotation::Rotate0)
            .into_buffered_graphics_mode();
        driver.init().map_err(|e| {
            format!("the OLED does not answer at I2C address {address:#04x}: {e:?}")
        })?;
        Ok(Ssd1306Display { driver })
    }
}

impl<I2C: embedded_hal::i2c::I2c + Send> Display for Ssd1306Display<I2C> {
    fn show(&mut self, frame: &Frame) -> Result<(), String> {
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                self.driver.set_pixel(x, y, frame.pixel(x, y));
            }
        }
        // The driver sends only the area that changed.
        self.driver
            .flush()
            .map_err(|e| format!("OLED write failed: {e:?}"))
    }

    fn set_dim(&mut self, dim: bool) -> Result<(), String> {
        let level = if dim {
            Brightness::DIMMEST
        } else {
            Brightness::NORMAL
        };
        self.driver
            .set_brightness(level)
            .map_err(|e| format!("OLED write failed: {e:?}"))
    }

    fn set_on(&mut self, on: bool) -> Result<(), String> {
        self.driver
            .set_display_on(on)
            .map_err(|e| format!("OLED write failed: {e:?}"))
    }
}

/// Opens the OLED on a Linux I2C bus (`/dev/i2c-1` on a Raspberry Pi).
pub fn open_ssd1306(bus: &str, address: u8) -> Result<Box<dyn Display>, String> {
    let i2c = linux_embedded_hal::I2cdev::new(bus).map_err(|e| {
        format!(
            "cannot open the I2C bus {bus} (`panel.i2c_bus`): {e}; enable I2C (dtparam=i2c_arm=on)"
        )
    })?;
    Ok(Box::new(Ssd1306Display::new(i2c, address)?))
}

/// A fake I2C bus that behaves like an SSD1306: it decodes the command and
/// data stream (control bytes, addressing modes, column/page windows,
/// remapping, contrast, display on/off) into the controller's RAM and shows
/// the picture a person would see.
#[cfg(test)]
pub mod fake {
    use embedded_hal::i2c::{ErrorType, I2c, Operation};

    pub struct FakeSsd1306 {
        pub address: u8,
        ram: [[u8; 128]; 8],
        mode: u8,
        col_range: (u8, u8),
        page_range: (u8, u8),
        col: u8,
        page: u8,
        pub seg_remap: bool,
        pub com_reversed: bool,
        pub inverted: bool,
        pub on: bool,
        pub contrast: u8,
        pending: Vec<u8>,
        pub commands_seen: usize,
        pub data_bytes_seen: usize,
    }

    impl FakeSsd1306 {
        pub fn new(address: u8) -> Self {
            FakeSsd1306 {
                address,
                ram: [[0; 128]; 8],
                mode: 2, // page addressing after reset
                col_range: (0, 127),
                page_range: (0, 7),
                col: 0,
                page: 0,
                seg_remap: false,
                com_reversed: false,
                inverted: false,
                on: false,
                contrast: 0x7f,
                pending: Vec::new(),
                commands_seen: 0,
                data_bytes_seen: 0,
            }
        }

        /// The picture on the glass, as a frame.
        pub fn visible(&self) -> crate::panel::frame::Frame {
            let mut f = crate::panel::frame::Frame::default();
            if !self.on {
                return f;
            }
            for y in 0..64u32 {
                for x in 0..128u32 {
                    let col = if self.seg_remap { x } else { 127 - x } as usize;
                    let row = if self.com_reversed { y } else { 63 - y } as usize;
                    let bit = self.ram[row / 8][col] >> (row % 8) & 1 == 1;
                    f.set(x, y, bit ^ self.inverted);
                }
            }
            f
        }

        fn args_needed(cmd: u8) -> usize {
            match cmd {
                0x20 | 0x81 | 0x8D | 0xA8 | 0xD3 | 0xD5 | 0xD9 | 0xDA | 0xDB | 0xAD => 1,
                0x21 | 0x22 | 0xA3 => 2,
                0x29 | 0x2A => 5,
                0x26 | 0x27 => 6,
                _ => 0,
            }
        }

        fn command(&mut self, c: &[u8]) {
            self.commands_seen += 1;
            match c[0] {
                0x20 => self.mode = c[1] & 3,
                0x21 => {
                    self.col_range = (c[1] & 127, c[2] & 127);
                    self.col = self.col_range.0;
                }
                0x22 => {
                    self.page_range = (c[1] & 7, c[2] & 7);
                    self.page = self.page_range.0;
                }
                0x81 => self.contrast = c[1],
                0xA0 | 0xA1 => self.seg_remap = c[0] == 0xA1,
                0xC0 | 0xC8 => self.com_reversed = c[0] == 0xC8,
                0xA6 | 0xA7 => self.inverted = c[0] == 0xA7,
                0xAE | 0xAF => self.on = c[0] == 0xAF,
                0xB0..=0xB7 if self.mode == 2 => self.page = c[0] & 7,
                0x00..=0x0F if self.mode == 2 => self.col = (self.col & 0xF0) | (c[0] & 0x0F),
                0x10..=0x1F if self.mode == 2 => {
                    self.col = (self.col & 0x0F) | ((c[0] & 0x0F) << 4)
                }
                _ => {}
            }
        }

        fn data(&mut self, b: u8) {
            self.data_bytes_seen += 1;
            self.ram[self.page as usize][self.col as usize] = b;
            match self.mode {
                0 => {
                    if self.col >= self.col_range.1 {
                        self.col = self.col_range.0;
                        self.page = if self.page >= self.page_range.1 {
                            self.page_range.0
                        } else {
                            self.page + 1
                        };
                    } else {
                        self.col += 1;
                    }
                }
                1 => {
                    if self.page >= self.page_range.1 {
                        self.page = self.page_range.0;
                        self.col = if self.col >= self.col_range.1 {
                            self.col_range.0
                        } else {
                            self.col + 1
                        };
                    } else {
                        self.page += 1;
                    }
                }
                _ => self.col = (self.col + 1).min(127),
            }
        }

        fn write(&mut self, bytes: &[u8]) {
            let mut i = 0;
            while i < bytes.len() {
                let control = bytes[i];
                i += 1;
                let single = control & 0x80 != 0; // Co: one byte, then another control byte
                let is_data = control & 0x40 != 0;
                let end = if single {
                    (i + 1).min(bytes.len())
                } else {
                    bytes.len()
                };
                for &b in &bytes[i..end] {
                    if is_data {
                        self.data(b);
                    } else {
                        self.pending.push(b);
                        if self.pending.len() > Self::args_needed(self.pending[0]) {
                            let cmd = std::mem::take(&mut self.pending);
                            self.command(&cmd);
                        }
                    }
                }
                i = end;
            }
        }
    }

    impl ErrorType for FakeSsd1306 {
        type Error = core::convert::Infallible;
    }

    impl I2c for FakeSsd1306 {
        fn transaction(
            &mut self,
            address: u8,
            operations: &mut [Operation<'_>],
        ) -> Result<(), Self::Error> {
            assert_eq!(address, self.address, "write to the wrong I2C address");
            for op in operations {
                match op {
                    Operation::Write(bytes) => self.write(bytes),
                    Operation::Read(buf) => buf.fill(0),
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSsd1306;
    use super::*;
    use crate::panel::screens::{self, tests as s, Screen};
    use crate::queue::store::JobState;
    use crate::view::DriveState;

    #[test]
    fn the_real_driver_puts_the_rendered_frame_on_the_glass() {
        let mut bus = FakeSsd1306::new(0x3C);
        {
            let mut oled = Ssd1306Display::new(&mut bus, 0x3C).unwrap();
            let mut first = Frame::default();
            screens::render(&s::model(Screen::Status, vec![], vec![]), &mut first);
            oled.show(&first).unwrap();
            // A second, different frame: only the changed area is sent.
            let mut second = Frame::default();
            screens::render(
                &s::model(
                    Screen::Status,
                    vec![s::drive(1, "FILMS", DriveState::Converting)],
                    vec![s::job(1, 1, "Фильм.dtshd", JobState::Running, 0.42)],
                ),
                &mut second,
            );
            oled.show(&second).unwrap();
            oled.set_dim(true).unwrap();
        }
        assert!(bus.on, "the display was never switched on");
        assert_eq!(bus.contrast, 0x00, "dimming did not lower the contrast");
        let mut expected = Frame::default();
        screens::render(
            &s::model(
                Screen::Status,
                vec![s::drive(1, "FILMS", DriveState::Converting)],
                vec![s::job(1, 1, "Фильм.dtshd", JobState::Running, 0.42)],
            ),
            &mut expected,
        );
        assert_eq!(bus.visible(), expected);
        assert!(bus.data_bytes_seen >= 1024);
    }

    #[test]
    fn switching_the_panel_off_blanks_the_glass() {
        let mut bus = FakeSsd1306::new(0x3C);
        {
            let mut oled = Ssd1306Display::new(&mut bus, 0x3C).unwrap();
            let mut f = Frame::default();
            screens::render(&s::model(Screen::Network, vec![], vec![]), &mut f);
            oled.show(&f).unwrap();
            oled.set_on(false).unwrap();
        }
        assert!(!bus.on);
        assert_eq!(bus.visible().lit(), 0);
    }
}
