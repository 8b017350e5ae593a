/// `bytes` as lower-case hex, two digits each, `separator` between them
/// ("0a:58:00:01" for a MAC with ":", a digest with "").
public func hexString<Bytes: Sequence>(_ bytes: Bytes, separator: String = "") -> String where Bytes.Element == UInt8 {
    let digits: [Character] = Array("0123456789abcdef")
    var out = ""
    for (i, b) in bytes.enumerated() {
        if i > 0 { out += separator }
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return out
}
