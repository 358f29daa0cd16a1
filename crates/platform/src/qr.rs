//! QR codes for the audience's phones: as an SVG for a page, as text for a terminal.

use crate::http::ApiError;

/// `url` as an SVG QR code, dark on white, at least 320 px.
pub fn svg(url: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(url.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("Cannot encode {url} as a QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(320, 320)
        .dark_color(qrcode::render::svg::Color("#1a1a1a"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

/// A QR code for a terminal, two rows a character, light on dark.
pub fn text(url: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    Some(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

/// [`svg`] as a `data:` URL, for an `<img>` a script fills in (the pages' policy allows
/// `data:` images).
pub fn data_url(url: &str) -> Result<String, ApiError> {
    let svg = svg(url)?;
    let mut out = String::from("data:image/svg+xml,");
    for byte in svg.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b' ' | b'-' | b'.' | b'_' | b'=' | b':' | b'/' | b',' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    Ok(out)
}
