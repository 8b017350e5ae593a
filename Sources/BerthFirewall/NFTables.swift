#if canImport(Glibc)
import Glibc
#endif
import CNFTables
import BerthJSON

/// libnftables, opened with dlopen on first use.
struct LibNFTables {
    typealias New = @convention(c) (UInt32) -> OpaquePointer?
    typealias Free = @convention(c) (OpaquePointer?) -> Void
    typealias Buffer = @convention(c) (OpaquePointer?) -> Int32
    typealias SetFlags = @convention(c) (OpaquePointer?, UInt32) -> Void
    typealias Run = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Int32
    typealias Get = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?

    let new: New, free: Free, bufferOutput: Buffer, bufferError: Buffer, setOutputFlags: SetFlags
    let run: Run, outputBuffer: Get, errorBuffer: Get

    nonisolated(unsafe) static var loaded: LibNFTables?

    static func load() throws(FirewallError) -> LibNFTables {
        if let loaded { return loaded }
        guard let handle = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            throw FirewallError(operation: "nftables", message: "cannot load libnftables.so.1 (install libnftables1): \(why)")
        }
        func symbol<T>(_ name: String, _ type: T.Type) throws(FirewallError) -> T {
            guard let p = dlsym(handle, name) else {
                throw FirewallError(operation: "nftables", message: "libnftables.so.1 has no \(name)")
            }
            return unsafeBitCast(p, to: type)
        }
        let lib = LibNFTables(
            new: try symbol("nft_ctx_new", New.self), free: try symbol("nft_ctx_free", Free.self),
            bufferOutput: try symbol("nft_ctx_buffer_output", Buffer.self),
            bufferError: try symbol("nft_ctx_buffer_error", Buffer.self),
            setOutputFlags: try symbol("nft_ctx_output_set_flags", SetFlags.self),
            run: try symbol("nft_run_cmd_from_buffer", Run.self),
            outputBuffer: try symbol("nft_ctx_get_output_buffer", Get.self),
            errorBuffer: try symbol("nft_ctx_get_error_buffer", Get.self))
        loaded = lib
        return lib
    }
}

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
    private let lib: LibNFTables

    init(json: Bool = false) throws(FirewallError) {
        lib = try LibNFTables.load()
        guard let ctx = lib.new(0) else {
            throw FirewallError(operation: "nftables", message: "could not create a libnftables context")
        }
        self.ctx = ctx
        _ = lib.bufferOutput(ctx)
        _ = lib.bufferError(ctx)
        if json {
            lib.setOutputFlags(ctx, UInt32(NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE))
        }
    }

    deinit { lib.free(ctx) }

    /// Runs `commands` (newline separated, applied as one transaction); returns stdout.
    @discardableResult
    func run(_ commands: String) throws(FirewallError) -> String {
        let rc = lib.run(ctx, commands)
        if rc != 0 {
            let message = lib.errorBuffer(ctx).map { String(cString: $0) } ?? "failed"
            throw FirewallError(operation: "nft", message: message.trimmingCharacters())
        }
        return lib.outputBuffer(ctx).map { String(cString: $0) } ?? ""
    }
}

/// A libnftables context kept open for several transactions, and closed
/// when the owner says. Closing the netlink socket of a transaction that
/// removed something waits for the kernel's grace period (10-20 ms here):
/// a short-lived process that closes it after its other slow work (a veth
/// deletion waits for one too) waits for both at once.
public final class NFTSession {
    private var opened: NFTContext?

    public init() {}

    var context: NFTContext {
        get throws(FirewallError) {
            if let opened { return opened }
            let c = try NFTContext()
            opened = c
            return c
        }
    }

    /// Closes the context now (also when the session goes).
    public func close() { opened = nil }
}

/// A rule found in one of Berth's nftables tables.
struct NFTRule {
    var chain: String
    var handle: Int
    var comment: String
}

extension NFTContext {
    /// The JSON items nft prints for `command` ("list table inet berth");
    /// empty when what it lists does not exist.
    func listed(_ command: String) throws(FirewallError) -> [JSON] {
        let output: String
        do {
            output = try run(command)
        } catch {
            if error.message.containsText("No such file or directory") { return [] }
            throw error
        }
        guard let json = try? JSON.parse(output), let items = json["nftables"]?.arrayValue else {
            throw FirewallError(operation: command, message: "unreadable JSON from libnftables")
        }
        return items
    }

    /// The commented rules of `table`; empty when the table does not exist.
    func rules(in table: NFTTable) throws(FirewallError) -> [NFTRule] {
        try listed("list table \(table)").compactMap { item in
            guard let rule = item["rule"], let handle = rule["handle"]?.intValue,
                  let comment = rule["comment"]?.stringValue else { return nil }
            return NFTRule(chain: rule["chain"]?.stringValue ?? "", handle: handle, comment: comment)
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

extension NFTContext {
    /// The elements of set `name` of `table` as nft prints them ("br0",
    /// "br0 . br0"); empty when the table or the set does not exist.
    func elements(of name: String, in table: NFTTable) throws(FirewallError) -> [String] {
        var out: [String] = []
        for item in try listed("list set \(table) \(name)") {
            for element in item["set"]?["elem"]?.arrayValue ?? [] {
                if let s = element.stringValue { out.append(s) }
                if let parts = element["concat"]?.arrayValue { out.append(parts.compactMap(\.stringValue).joined(separator: " . ")) }
            }
        }
        return out
    }
}
