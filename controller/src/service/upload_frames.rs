//! `UploadOutput` without tonic's decoder. tonic copies every HTTP/2 frame of a request into a
//! buffer of its own before it decodes a message: for an upload, a second copy of every byte
//! (what it cost: `docs/decisions/0004-upload-path.md`). Here the request body is
//! read frame by frame and each message decoded straight from the frame that carried it, so
//! a chunk's data stays a slice of hyper's read buffer. The agent sizes its messages to fit
//! one frame; a message that spans frames (the first, with its header, or one cut by flow
//! control) is joined with one copy. Everything else about the call — the token check, the
//! handler, its statuses — is unchanged: `agent::UploadPath` sits inside the interceptor and
//! only replaces the decoding of this one method.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use ferry_proto::v1 as pb;
use http_body_util::BodyExt;
use prost::Message;
use tonic::{Code, Status};

/// A gRPC message's prefix: a compression flag and a big-endian length.
pub(super) const PREFIX: usize = 5;
/// Why a compressed upload (by its header or a message's flag) is refused.
pub(super) const COMPRESSED: &str = "compressed uploads are not accepted: send chunks uncompressed";
/// Why a body that ends inside a message is refused.
const CUT: &str = "the upload stream ended inside a message";

/// The upload chunks of a request body, decoded from its frames as they arrive.
pub struct Frames<B> {
    body: B,
    /// Received and not yet decoded, in order.
    parts: VecDeque<Bytes>,
    buffered: usize,
    max_message: usize,
}

impl<B> Frames<B>
where
    B: http_body::Body<Data = Bytes, Error = Status> + Unpin,
{
    pub fn new(body: B, max_message: usize) -> Self {
        Self {
            body,
            parts: VecDeque::new(),
            buffered: 0,
            max_message,
        }
    }

    /// The next chunk; `None` once the body ends between messages.
    pub async fn message(&mut self) -> Result<Option<pb::UploadChunk>, Status> {
        if !self.fill(PREFIX).await? {
            return match self.buffered {
                0 => Ok(None),
                _ => Err(Status::internal(CUT)),
            };
        }
        let mut prefix = self.take(PREFIX);
        if prefix.get_u8() != 0 {
            return Err(Status::unimplemented(COMPRESSED));
        }
        let len = prefix.get_u32() as usize;
        if len > self.max_message {
            return Err(Status::out_of_range(format!(
                "an upload message of {len} bytes is over the limit of {} bytes",
                self.max_message
            )));
        }
        if !self.fill(len).await? {
            return Err(Status::internal(CUT));
        }
        pb::UploadChunk::decode(self.take(len))
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("an upload chunk does not decode: {e}")))
    }

    /// Reads frames until `n` bytes are buffered; `false` when the body ends first. A body
    /// cancelled by its client ends like one that ended (as tonic's decoder treats it).
    async fn fill(&mut self, n: usize) -> Result<bool, Status> {
        while self.buffered < n {
            match self.body.frame().await {
                None => return Ok(false),
                Some(Err(status)) if status.code() == Code::Cancelled => return Ok(false),
                Some(Err(status)) => return Err(status),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            self.buffered += data.len();
                            self.parts.push_back(data);
                        }
                    }
                }
            }
        }
        Ok(true)
    }

    /// The next `n` buffered bytes (`n <= buffered`): a slice of one frame when they lie in
    /// one, else joined.
    fn take(&mut self, n: usize) -> Bytes {
        self.buffered -= n;
        if let Some(front) = self.parts.front_mut() {
            if front.len() >= n {
                let out = front.split_to(n);
                if front.is_empty() {
                    self.parts.pop_front();
                }
                return out;
            }
        }
        let mut joined = BytesMut::with_capacity(n);
        while joined.len() < n {
            let Some(front) = self.parts.front_mut() else {
                break;
            };
            let k = (n - joined.len()).min(front.len());
            joined.extend_from_slice(&front.split_to(k));
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
        joined.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::agent::MAX_MESSAGE_BYTES;
    use http_body_util::StreamBody;

    type Frame = Result<http_body::Frame<Bytes>, Status>;

    fn message(chunk: &pb::UploadChunk) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(chunk.encoded_len() as u32).to_be_bytes());
        out.extend_from_slice(&chunk.encode_to_vec());
        out
    }

    fn chunk(offset: u64, data: &[u8]) -> pb::UploadChunk {
        pb::UploadChunk {
            offset,
            data: Bytes::copy_from_slice(data),
            crc32c: 7,
            ..Default::default()
        }
    }

    fn frames(
        pieces: Vec<Frame>,
    ) -> Frames<StreamBody<tokio_stream::Iter<std::vec::IntoIter<Frame>>>> {
        Frames::new(
            StreamBody::new(tokio_stream::iter(pieces)),
            MAX_MESSAGE_BYTES,
        )
    }

    fn data(bytes: &[u8]) -> Frame {
        Ok(http_body::Frame::data(Bytes::copy_from_slice(bytes)))
    }

    #[tokio::test]
    async fn messages_are_decoded_whatever_the_frames_cut() {
        let chunks = [chunk(0, b"first"), chunk(5, &[9; 3000]), chunk(3005, b"")];
        let wire: Vec<u8> = chunks.iter().flat_map(message).collect();
        // One frame; a frame per byte; frames cutting prefixes and fields at odd places.
        for cut in [wire.len(), 1, 3, 7, 1000] {
            let pieces = wire.chunks(cut).map(data).collect();
            let mut frames = frames(pieces);
            for expected in &chunks {
                assert_eq!(frames.message().await.unwrap().as_ref(), Some(expected));
            }
            assert_eq!(frames.message().await.unwrap(), None, "cut {cut}");
        }
    }

    #[tokio::test]
    async fn a_message_in_one_frame_keeps_its_data_in_that_frame() {
        let wire = Bytes::from(message(&chunk(0, &[1; 4096])));
        let mut frames = frames(vec![Ok(http_body::Frame::data(wire.clone()))]);
        let got = frames.message().await.unwrap().unwrap();
        let inside = wire.as_ptr_range();
        assert!(inside.contains(&got.data.as_ptr()), "the data was copied");
    }

    #[tokio::test]
    async fn bad_streams_are_refused_naming_the_problem() {
        let wire = message(&chunk(0, b"abc"));
        let mut cut = frames(vec![data(&wire[..wire.len() - 1])]);
        let err = cut.message().await.unwrap_err();
        assert!(err.message().contains("ended inside a message"), "{err}");

        let mut compressed = wire.clone();
        compressed[0] = 1;
        let err = frames(vec![data(&compressed)]).message().await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err}");

        let mut huge = vec![0];
        huge.extend_from_slice(&((MAX_MESSAGE_BYTES + 1) as u32).to_be_bytes());
        let err = frames(vec![data(&huge)]).message().await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err}");

        let garbage = [0, 0, 0, 0, 2, 0xff, 0xff];
        let err = frames(vec![data(&garbage)]).message().await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");

        let failed: Frame = Err(Status::unavailable("connection reset"));
        let err = frames(vec![data(&wire[..3]), failed])
            .message()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
    }
}
