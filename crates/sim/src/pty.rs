//! Serving an emulator on a pseudo-terminal, so that atprov (or any serial tool) opens it like
//! a USB-UART adapter. The emulator holds the master side and also keeps one non-exclusive,
//! unlocked descriptor of the slave open, so the master never sees a hang-up between clients
//! and any client can open the slave path exclusively.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A pseudo-terminal pair: the async master for the emulator and the slave path for clients.
pub struct Pty {
    /// The emulator's side of the pseudo-terminal.
    pub master: PtyMaster,
    /// The path the host opens (`/dev/pts/N`).
    pub path: String,
    /// Kept open so that the master side does not report a hang-up when no client is attached.
    _slave: OwnedFd,
}

/// Opens a new pseudo-terminal in raw mode.
pub fn open() -> io::Result<Pty> {
    let (mut master, mut slave) = (0 as RawFd, 0 as RawFd);
    // SAFETY: openpty writes two descriptors; null name/termios/winsize are allowed.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just returned by openpty and are owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios is plain data; tcgetattr fills it before use.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let path = slave_path(&slave)?;
    set_nonblocking(master.as_raw_fd())?;
    // SAFETY: the descriptor is owned by the OwnedFd moved into the AsyncFd, which keeps it
    // open for as long as it is registered and closes it only after deregistering.
    let fd = unsafe { AsyncFd::register(master) }.map_err(|e| e.into_parts().1)?;
    Ok(Pty {
        master: PtyMaster { fd },
        path,
        _slave: slave,
    })
}

fn slave_path(slave: &OwnedFd) -> io::Result<String> {
    let link = format!("/proc/self/fd/{}", slave.as_raw_fd());
    match std::fs::read_link(&link) {
        Ok(p) => Ok(p.display().to_string()),
        Err(_) => {
            let mut buf = [0 as libc::c_char; 128];
            // SAFETY: ttyname_r writes at most buf.len() bytes including the NUL.
            let rc = unsafe { libc::ttyname_r(slave.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            // SAFETY: ttyname_r NUL-terminated the buffer on success.
            let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            Ok(name.to_string_lossy().into_owned())
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The master side of a pseudo-terminal as an async byte stream.
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    /// Reads the rate the host set on its side (Linux answers a master's termios request with
    /// the slave's settings): what the emulated UART compares its own rate with.
    pub fn host_rate(&self) -> io::Result<crate::HostRate> {
        let fd = self.fd.get_ref().try_clone()?;
        Ok(crate::HostRate::new(move || termios_rate(fd.as_raw_fd())))
    }
}

#[cfg(target_os = "linux")]
fn termios_rate(fd: RawFd) -> Option<u32> {
    // SAFETY: termios2 is plain data; TCGETS2 fills it or fails.
    unsafe {
        let mut t: libc::termios2 = std::mem::zeroed();
        (libc::ioctl(fd, libc::TCGETS2, &mut t) == 0).then_some(t.c_ospeed)
    }
}

#[cfg(not(target_os = "linux"))]
fn termios_rate(_fd: RawFd) -> Option<u32> {
    None
}

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let r = guard.try_io(|inner| {
                // SAFETY: reading into an initialised buffer of the given length.
                let n = unsafe {
                    libc::read(
                        inner.as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: no slave open at this instant; wait for the next readiness.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let r = guard.try_io(|inner| {
                // SAFETY: writing from a valid slice.
                let n = unsafe { libc::write(inner.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
