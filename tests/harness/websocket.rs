//! A WebSocket echo backend and a WebSocket client that sends the handshake headers it is
//! given, both over plain TCP on loopback (tungstenite's handshake, no TLS).

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::server::{Request, Response as WsResponse};
use tungstenite::{Message, WebSocket};

/// Accepts WebSocket handshakes and echoes every text message back; records each
/// handshake's headers (lower-case names) as the backend saw them.
pub struct WsEcho {
    pub port: u16,
    pub handshakes: Arc<Mutex<Vec<Vec<(String, String)>>>>,
    stop: Arc<AtomicBool>,
}

impl WsEcho {
    pub fn start() -> WsEcho {
        let listener = super::bind_loopback(0, "websocket backend");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, st) = (handshakes.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let seen = seen.clone();
                        std::thread::spawn(move || echo(conn, &seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        WsEcho {
            port,
            handshakes,
            stop,
        }
    }

    pub fn opened(&self) -> usize {
        self.handshakes.lock().unwrap().len()
    }

    /// A header of the last handshake the backend accepted.
    pub fn last_header(&self, name: &str) -> Option<String> {
        let all = self.handshakes.lock().unwrap();
        all.last()?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn echo(conn: TcpStream, seen: &Mutex<Vec<Vec<(String, String)>>>) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let record = |req: &Request, resp: WsResponse| {
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        seen.lock().unwrap().push(headers);
        Ok(resp)
    };
    let Ok(mut socket) = tungstenite::accept_hdr(conn, record) else {
        return;
    };
    while let Ok(message) = socket.read() {
        match message {
            Message::Text(text) => {
                if socket.send(Message::text(format!("echo: {text}"))).is_err() {
                    return;
                }
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}

/// The outcome of a WebSocket handshake through the gateway.
pub enum Handshake {
    /// 101: the open channel.
    Open(WebSocket<TcpStream>),
    /// Any other answer: its status and body.
    Refused(u16, Vec<u8>),
}

/// Opens `ws://127.0.0.1:{port}{path}` with these extra handshake headers.
pub fn ws_connect(port: u16, path: &str, headers: &[(&str, &str)]) -> Handshake {
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("a WebSocket request");
    for (name, value) in headers {
        request.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            tungstenite::http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let stream = super::connect(port, Duration::from_secs(5));
    match tungstenite::client::client(request, stream) {
        Ok((socket, _)) => Handshake::Open(socket),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            Handshake::Refused(status, resp.into_body().unwrap_or_default())
        }
        Err(e) => panic!("WebSocket handshake through the gateway failed: {e}"),
    }
}

/// Sends one text message and reads the echo.
pub fn ws_round_trip(socket: &mut WebSocket<TcpStream>, text: &str) -> String {
    socket.send(Message::text(text)).expect("send");
    loop {
        match socket.read().expect("read the echo") {
            Message::Text(t) => return t.as_str().to_string(),
            Message::Close(_) => panic!("the channel closed"),
            _ => {}
        }
    }
}
