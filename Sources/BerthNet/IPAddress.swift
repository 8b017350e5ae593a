#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An IPv4 or IPv6 address, held as its 4 or 16 bytes in network order.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public enum Family: Sendable { case v4, v6 }

    public var family: Family { bytes.count == 4 ? .v4 : .v6 }
    public var bitWidth: Int { bytes.count * 8 }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses dotted IPv4 ("10.0.0.1") or IPv6 text ("fd00::1").
    public init?(_ text: String) {
        if text.contains(":") {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &raw) { Array($0) }
        } else {
            var raw = in_addr()
            guard inet_pton(AF_INET, text, &raw) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &raw) { Array($0) }
        }
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        bytes.withUnsafeBytes { raw in
            _ = inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        if a.bytes.count != b.bytes.count { return a.bytes.count < b.bytes.count }
        return a.bytes.lexicographicallyPrecedes(b.bytes)
    }

    /// This address with every bit past `prefixLength` cleared.
    public func masked(to prefixLength: Int) -> IPAddress {
        var out = bytes
        for i in 0..<out.count {
            let bitsBefore = i * 8
            if bitsBefore >= prefixLength {
                out[i] = 0
            } else if bitsBefore + 8 > prefixLength {
                out[i] &= UInt8(truncatingIfNeeded: 0xFF << (8 - (prefixLength - bitsBefore)))
            }
        }
        return IPAddress(unchecked: out)
    }

    /// The address `n` after this one, or nil past the end of the family's space.
    public func advanced(by n: UInt64) -> IPAddress? {
        var out = bytes
        var carry = n
        var i = out.count - 1
        while carry > 0 {
            if i < 0 { return nil }
            let sum = UInt64(out[i]) + (carry & 0xFF)
            out[i] = UInt8(truncatingIfNeeded: sum)
            carry = (carry >> 8) + (sum >> 8)
            i -= 1
        }
        return IPAddress(unchecked: out)
    }

    private init(unchecked bytes: [UInt8]) { self.bytes = bytes }
}

/// An address together with a prefix length, as CNI writes them:
/// "10.1.0.5/24". The address may have host bits set (an interface address);
/// `network` gives the prefix itself.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init?(address: IPAddress, prefixLength: Int) {
        guard prefixLength >= 0, prefixLength <= address.bitWidth else { return nil }
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses "ADDRESS/LENGTH".
    public init?(_ text: String) {
        guard let slash = text.firstIndex(of: "/"),
              let address = IPAddress(String(text[..<slash])) else { return nil }
        let lengthText = text[text.index(after: slash)...]
        guard !lengthText.isEmpty, lengthText.count <= 3, lengthText.allSatisfy(\.isASCII),
              lengthText.allSatisfy(\.isNumber), let length = Int(lengthText) else { return nil }
        self.init(address: address, prefixLength: length)
    }

    public var family: IPAddress.Family { address.family }
    public var network: IPPrefix { IPPrefix(uncheckedAddress: address.masked(to: prefixLength), prefixLength) }
    public var description: String { "\(address)/\(prefixLength)" }

    public func contains(_ other: IPAddress) -> Bool {
        other.family == address.family
            && other.masked(to: prefixLength) == address.masked(to: prefixLength)
    }

    /// Whether the two prefixes share any address.
    public func overlaps(_ other: IPPrefix) -> Bool {
        guard family == other.family else { return false }
        let shorter = min(prefixLength, other.prefixLength)
        return address.masked(to: shorter) == other.address.masked(to: shorter)
    }

    /// The last address of the prefix (every host bit set): the IPv4 broadcast address.
    public var lastAddress: IPAddress {
        var bytes = address.bytes
        for i in 0..<bytes.count {
            let before = i * 8
            if before >= prefixLength {
                bytes[i] = 0xFF
            } else if before + 8 > prefixLength {
                bytes[i] |= UInt8(0xFF >> (prefixLength - before))
            }
        }
        return IPAddress(bytes: bytes)!
    }

    /// True for 0.0.0.0/0 and ::/0.
    public var isDefaultRoute: Bool { prefixLength == 0 }

    private init(uncheckedAddress: IPAddress, _ prefixLength: Int) {
        self.address = uncheckedAddress
        self.prefixLength = prefixLength
    }
}
