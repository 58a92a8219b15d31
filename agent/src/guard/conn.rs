//! A guardian's end of its control socket (its stdin): frames from the agent, each attempt's
//! spec arriving with the task's stdout and stderr (`SCM_RIGHTS`), and frames back. Never
//! blocks: the guardian polls it beside its signals and its timer.

use std::{
    collections::VecDeque,
    io::{IoSliceMut, Write},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout},
    sys::socket::{recvmsg, ControlMessageOwned, MsgFlags},
};

use super::protocol::{split_frames, FromGuard, Spec, ToGuard};

/// What came from the agent.
pub(super) enum Incoming {
    /// The next attempt, with the task's stdout and stderr.
    Attempt(Box<Spec>, OwnedFd, OwnedFd),
    Msg(ToGuard),
}

pub(super) struct Conn {
    sock: UnixStream,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    /// False once the agent's end has closed (or the stream broke).
    pub open: bool,
}

impl Conn {
    pub fn new(sock: UnixStream) -> std::io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Conn {
            sock,
            buf: Vec::new(),
            fds: VecDeque::new(),
            open: true,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Reads what has arrived: the messages it completes, in order.
    pub fn read_available(&mut self) -> Vec<Incoming> {
        let mut chunk = [0u8; 16 * 1024];
        while self.open {
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let mut iov = [IoSliceMut::new(&mut chunk)];
            let flags = MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT;
            let (n, fds) =
                match recvmsg::<()>(self.sock.as_raw_fd(), &mut iov, Some(&mut space), flags) {
                    Ok(msg) => {
                        let mut fds = Vec::new();
                        for cmsg in msg.cmsgs().into_iter().flatten() {
                            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                                fds.extend(raw);
                            }
                        }
                        (msg.bytes, fds)
                    }
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => break,
                    Err(_) => {
                        self.open = false;
                        break;
                    }
                };
            // SAFETY: the kernel just installed these descriptors for us.
            self.fds.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
            if n == 0 {
                self.open = false;
            } else {
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
        let Ok((frames, used)) = split_frames(&self.buf) else {
            self.open = false;
            return Vec::new();
        };
        let mut out = Vec::new();
        for frame in frames {
            match ToGuard::decode(frame) {
                Ok(ToGuard::Spec(spec)) => match (self.fds.pop_front(), self.fds.pop_front()) {
                    (Some(stdout), Some(stderr)) => {
                        out.push(Incoming::Attempt(spec, stdout, stderr))
                    }
                    // A spec without its pipes: the agent is not one we understand.
                    _ => self.open = false,
                },
                Ok(msg) => out.push(Incoming::Msg(msg)),
                Err(_) => self.open = false,
            }
        }
        self.buf.drain(..used);
        out
    }

    /// Sends a frame. A few small frames per attempt fit the socket's buffer even while the
    /// agent is frozen; should it be full, a second is waited for, then the agent is taken
    /// for gone (if it is gone, nobody is left to tell).
    pub fn send(&mut self, msg: &FromGuard) {
        let frame = msg.encode();
        let mut sent = 0;
        while sent < frame.len() && self.open {
            match (&self.sock).write(&frame[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLOUT)];
                    if !matches!(nix::poll::poll(&mut fds, PollTimeout::from(1000u16)), Ok(1)) {
                        self.open = false;
                    }
                }
                Err(_) => self.open = false,
            }
        }
    }
}
