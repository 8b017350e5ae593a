/// Parses a MAC address "aa:bb:cc:dd:ee:ff" (either case) into its 6 bytes.
public func parseMAC(_ text: String) -> [UInt8]? {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 6 else { return nil }
    var bytes: [UInt8] = []
    for part in parts {
        guard part.count == 2, let b = UInt8(part, radix: 16) else { return nil }
        bytes.append(b)
    }
    return bytes
}

/// A random locally administered unicast MAC, as the kernel makes for veths.
public func randomLocalMAC() -> String {
    var rng = SystemRandomNumberGenerator()
    var bytes = (0..<6).map { _ in UInt8.random(in: 0...255, using: &rng) }
    bytes[0] = (bytes[0] & 0xFE) | 0x02
    return hexString(bytes, separator: ":")
}
