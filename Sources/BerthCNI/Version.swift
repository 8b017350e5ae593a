/// Berth's version, written here and nowhere else: `berthctl --version`,
/// `berth-agent --version` and the plugins' `--version` print it, and
/// scripts/package.sh reads it from this file for the Debian package.
public enum BerthVersion {
    public static let string = "0.9.0"

    /// What `berth --version` and `berth-ipam --version` print, as the
    /// reference plugins print their "about" text: the program, its version,
    /// the CNI versions it speaks.
    public static func about(program: String) -> String {
        "\(program) \(string) (Berth)\nCNI protocol versions supported: \(CNIVersion.supported.map(\.description).joined(separator: ", "))\n"
    }
}
