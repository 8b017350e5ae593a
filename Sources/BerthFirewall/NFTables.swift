import CNFTables
import BerthCNI

/// A failed nftables or iptables operation.
public struct FirewallError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let message: String

    public var description: String { "\(operation): \(message)" }
}

/// One libnftables context: runs nft commands (atomically, as one batch per
/// call) and captures their output and errors instead of printing them.
final class NFTContext {
    private let ctx: OpaquePointer

    init(json: Bool = false) throws(FirewallError) {
        guard let ctx = nft_ctx_new(0) else {
            throw FirewallError(operation: "nftables", message: "could not create a libnftables context")
        }
        self.ctx = ctx
        nft_ctx_buffer_output(ctx)
        nft_ctx_buffer_error(ctx)
        if json {
            nft_ctx_output_set_flags(ctx, UInt32(NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE))
        }
    }

    deinit { nft_ctx_free(ctx) }

    /// Runs `commands` (newline separated, applied as one transaction); returns stdout.
    @discardableResult
    func run(_ commands: String) throws(FirewallError) -> String {
        let rc = nft_run_cmd_from_buffer(ctx, commands)
        if rc != 0 {
            let message = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? "failed"
            throw FirewallError(operation: "nft", message: message.trimmingCharacters())
        }
        return nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? ""
    }
}

/// A rule found in one of Berth's nftables tables.
struct NFTRule {
    var family: String
    var table: String
    var chain: String
    var handle: Int
    var comment: String
}

extension NFTContext {
    /// The commented rules of table `family name`; empty when the table does not exist.
    func rules(family: String, table: String) throws(FirewallError) -> [NFTRule] {
        let output: String
        do {
            output = try run("list table \(family) \(table)")
        } catch {
            if error.message.contains("No such file or directory") { return [] }
            throw error
        }
        guard let json = try? JSON.parse(output), let items = json["nftables"]?.arrayValue else {
            throw FirewallError(operation: "list table \(family) \(table)", message: "unreadable JSON from libnftables")
        }
        return items.compactMap { item in
            guard let rule = item["rule"], let handle = rule["handle"]?.intValue,
                  let comment = rule["comment"]?.stringValue else { return nil }
            return NFTRule(family: rule["family"]?.stringValue ?? family, table: rule["table"]?.stringValue ?? table,
                           chain: rule["chain"]?.stringValue ?? "", handle: handle, comment: comment)
        }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
