//! The wire format between peers: one postcard message per frame, each
//! frame a 4-byte big-endian length then the message. A length over
//! [`MAX_MESSAGE`] is refused before anything is allocated, and every
//! message is validated after decoding.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Protocol version spoken here; a hello with another is refused.
pub const VERSION: u16 = 1;

/// Largest frame accepted, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Longest peer name, in bytes (as the `name` setting).
pub const MAX_NAME: usize = 64;

/// A message between peers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The first message each way on a new connection.
    Hello {
        /// [`VERSION`] of the sender.
        version: u16,
        /// The sender's `name` setting.
        name: String,
    },
}

/// A frame that could not be read or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The stream failed or ended early.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// A frame longer than [`MAX_MESSAGE`].
    #[error("frame of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLong(usize),
    /// Bytes that do not decode as a message.
    #[error("undecodable message: {0}")]
    Decode(#[from] postcard::Error),
    /// A message that decodes but breaks a rule.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl Message {
    /// Checks the rules postcard cannot express.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Message::Hello { version, .. } if *version != VERSION => Err(ProtocolError::Invalid(
                format!("protocol version {version}, this peer speaks {VERSION}"),
            )),
            Message::Hello { name, .. }
                if name.is_empty()
                    || name.len() > MAX_NAME
                    || name.contains(char::is_whitespace) =>
            {
                Err(ProtocolError::Invalid("bad peer name".into()))
            }
            Message::Hello { .. } => Ok(()),
        }
    }
}

/// Writes one frame; returns the bytes sent.
pub async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> Result<usize, ProtocolError> {
    let body = postcard::to_stdvec(message)?;
    if body.len() > MAX_MESSAGE {
        return Err(ProtocolError::TooLong(body.len()));
    }
    writer.write_all(&(body.len() as u32).to_be_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await?;
    Ok(4 + body.len())
}

/// Reads and validates one frame; returns the message and the bytes read.
pub async fn recv<R: AsyncRead + Unpin>(reader: &mut R) -> Result<(Message, usize), ProtocolError> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(ProtocolError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    let message: Message = postcard::from_bytes(&body)?;
    message.validate()?;
    Ok((message, 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: &str) -> Message {
        Message::Hello {
            version: VERSION,
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buf = Vec::new();
        let sent = send(&mut buf, &hello("laptop")).await.unwrap();
        assert_eq!(sent, buf.len());
        let (message, read) = recv(&mut buf.as_slice()).await.unwrap();
        assert_eq!((message, read), (hello("laptop"), sent));
    }

    #[tokio::test]
    async fn bad_frames_are_refused_before_use() {
        let mut huge = (MAX_MESSAGE as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            recv(&mut huge.as_slice()).await,
            Err(ProtocolError::TooLong(_))
        ));
        let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            recv(&mut garbage.as_slice()).await,
            Err(ProtocolError::Decode(_))
        ));
        let mut truncated = Vec::new();
        send(&mut truncated, &hello("x")).await.unwrap();
        truncated.pop();
        assert!(matches!(
            recv(&mut truncated.as_slice()).await,
            Err(ProtocolError::Io(_))
        ));
        let mut old = Vec::new();
        send(
            &mut old,
            &Message::Hello {
                version: 0,
                name: "x".into(),
            },
        )
        .await
        .unwrap();
        assert!(matches!(
            recv(&mut old.as_slice()).await,
            Err(ProtocolError::Invalid(_))
        ));
        let mut spaced = Vec::new();
        send(&mut spaced, &hello("two words")).await.unwrap();
        assert!(matches!(
            recv(&mut spaced.as_slice()).await,
            Err(ProtocolError::Invalid(_))
        ));
    }
}
