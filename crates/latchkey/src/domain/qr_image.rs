//! Text to a QR code image, as SVG: for TOTP enrolment (`otpauth://` URIs) and QR login URLs.

/// An SVG QR code of `data`, at least 200 px square with its quiet zone (scanners need the
/// margin). Fails only when `data` is too long for any QR version.
pub fn svg(data: &str) -> Result<String, qrcode::types::QrError> {
    let qr = qrcode::QrCode::new(data.as_bytes())?;
    Ok(qr.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_svg_and_refuses_what_cannot_fit() {
        let svg = super::svg("otpauth://totp/Latchkey:ann?secret=ABC").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(super::svg(&"x".repeat(8000)).is_err());
    }
}
