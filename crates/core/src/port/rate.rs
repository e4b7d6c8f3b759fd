//! The line rate of an open port, changeable between commands (`--flash-baud`): a second
//! descriptor of the serial device, so the engine keeps sole ownership of the byte stream,
//! and the facts that decide whether a rate means anything on this port.

use std::sync::Arc;

/// What the host can do with the line rate of an open port.
#[derive(Clone, Debug)]
pub enum LineRate {
    /// A UART behind this port: its rate can be changed.
    Uart(RateHandle),
    /// The rate means nothing here or cannot be changed; why, in a few words.
    Fixed(String),
}

/// Changes and reads the rate of a serial device the engine owns.
#[derive(Clone, Debug)]
pub struct RateHandle {
    #[cfg(target_os = "linux")]
    fd: Arc<std::os::fd::OwnedFd>,
    #[cfg(not(target_os = "linux"))]
    _none: Arc<()>,
}

impl RateHandle {
    #[cfg(target_os = "linux")]
    pub(super) fn new(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<RateHandle> {
        Ok(RateHandle {
            fd: Arc::new(fd.try_clone_to_owned()?),
        })
    }

    /// The rate the driver runs the port at now.
    #[cfg(target_os = "linux")]
    pub fn get(&self) -> std::io::Result<u32> {
        use std::os::fd::AsRawFd;
        // SAFETY: termios2 is plain data; TCGETS2 fills it or fails.
        unsafe {
            let mut t: libc::termios2 = std::mem::zeroed();
            if libc::ioctl(self.fd.as_raw_fd(), libc::TCGETS2, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(t.c_ospeed)
        }
    }

    /// Sets both directions to `rate` now, and returns the rate the driver reports back. It
    /// does not wait for output to drain (with RTS/CTS held off that could block forever):
    /// callers change the rate only once the module has answered what they wrote, or after
    /// giving a blind write its wire time (a USB-UART driver writes the rate it really set: a
    /// CP2102 asked for 2,000,000 answers otherwise).
    #[cfg(target_os = "linux")]
    pub fn set(&self, rate: u32) -> std::io::Result<u32> {
        use std::os::fd::AsRawFd;
        // SAFETY: as in `get`; TCSETSW2 reads the struct we filled.
        unsafe {
            let mut t: libc::termios2 = std::mem::zeroed();
            if libc::ioctl(self.fd.as_raw_fd(), libc::TCGETS2, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            t.c_cflag &= !(libc::CBAUD | (libc::CBAUD << libc::IBSHIFT));
            t.c_cflag |= libc::BOTHER | (libc::BOTHER << libc::IBSHIFT);
            t.c_ispeed = rate;
            t.c_ospeed = rate;
            if libc::ioctl(self.fd.as_raw_fd(), libc::TCSETS2, &t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        self.get()
    }

    /// Drops what arrived and was not read yet (bytes received while the rates disagreed).
    #[cfg(target_os = "linux")]
    pub fn discard_input(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: tcflush on a descriptor we own.
        unsafe {
            libc::tcflush(self.fd.as_raw_fd(), libc::TCIFLUSH);
        }
    }

    /// The rate (not known off Linux).
    #[cfg(not(target_os = "linux"))]
    pub fn get(&self) -> std::io::Result<u32> {
        Err(std::io::Error::other("changing the line rate needs Linux"))
    }

    /// Sets the rate (not supported off Linux).
    #[cfg(not(target_os = "linux"))]
    pub fn set(&self, _rate: u32) -> std::io::Result<u32> {
        Err(std::io::Error::other("changing the line rate needs Linux"))
    }

    /// Drops unread input (nothing off Linux).
    #[cfg(not(target_os = "linux"))]
    pub fn discard_input(&self) {}
}

/// Why the rate means nothing on a USB device with these ids: the module's own USB AT port
/// (Quectel, Luat) or Espressif's USB-Serial-JTAG carry bytes at USB speed whatever the rate
/// says (`reference/uart-rate.md` §3). Bridges such as the CH9102 (`1a86:55d4`) are real
/// UARTs even when the OS CDC driver serves them.
pub fn native_usb(vid: u16, pid: u16) -> Option<&'static str> {
    match (vid, pid) {
        (0x2c7c, _) => Some("a Quectel USB AT port"),
        (0x19d1, _) => Some("a Luat USB AT port"),
        (0x303a, 0x1001) => Some("Espressif's USB-Serial-JTAG port"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::native_usb;

    #[test]
    fn native_ports_are_told_from_bridges_by_their_ids() {
        assert!(native_usb(0x2c7c, 0x0901).is_some());
        assert!(native_usb(0x19d1, 0x0001).is_some());
        assert!(native_usb(0x303a, 0x1001).is_some());
        // CP2102, CH340, CH9102 (which may use the CDC driver), FTDI: real UARTs.
        for (v, p) in [
            (0x10c4, 0xea60),
            (0x1a86, 0x7523),
            (0x1a86, 0x55d4),
            (0x0403, 0x6001),
        ] {
            assert!(native_usb(v, p).is_none(), "{v:04x}:{p:04x}");
        }
    }
}
