import BerthJSON
/// A CNI specification version, "MAJOR.MINOR.PATCH".
public struct CNIVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public let major: Int
    public let minor: Int
    public let patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses "1.0.0"; nil for anything else (including "1.0" and "v1.0.0").
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        var numbers: [Int] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 6, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let n = Int(part) else { return nil }
            numbers.append(n)
        }
        self.init(numbers[0], numbers[1], numbers[2])
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public static func < (a: CNIVersion, b: CNIVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    public static let v0_1_0 = CNIVersion(0, 1, 0)
    public static let v0_2_0 = CNIVersion(0, 2, 0)
    public static let v0_3_0 = CNIVersion(0, 3, 0)
    public static let v0_3_1 = CNIVersion(0, 3, 1)
    public static let v0_4_0 = CNIVersion(0, 4, 0)
    public static let v1_0_0 = CNIVersion(1, 0, 0)
    public static let v1_1_0 = CNIVersion(1, 1, 0)

    /// Every version Berth speaks, oldest first.
    public static let supported: [CNIVersion] = [.v0_1_0, .v0_2_0, .v0_3_0, .v0_3_1, .v0_4_0, .v1_0_0, .v1_1_0]
    public static let latest = CNIVersion.v1_1_0

    /// The version libcni assumes for a config without `cniVersion`.
    public static let implicit = CNIVersion.v0_1_0

    /// Whether results of this version use the old `ip4`/`ip6` form.
    public var usesLegacyResult: Bool { self < .v0_3_0 }
    /// Whether CHECK exists in this version.
    public var supportsCheck: Bool { self >= .v0_4_0 }
    /// Whether STATUS and GC exist in this version.
    public var supportsStatusAndGC: Bool { self >= .v1_1_0 }

    /// The VERSION command's answer.
    public static func versionInfo(answering version: CNIVersion) -> JSON {
        .object([
            "cniVersion": .string(version.description),
            "supportedVersions": .array(supported.map { .string($0.description) }),
        ])
    }
}
