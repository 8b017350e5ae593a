/// One of Berth's nftables tables: a family and a name. Berth's rules live
/// only in tables of its own, so that flushing or listing them never touches
/// anyone else's.
public struct NFTTable: Hashable, Sendable, CustomStringConvertible {
    public enum Family: String, Sendable { case inet, bridge }

    public let family: Family
    public let name: String

    public init(family: Family, name: String) {
        self.family = family
        self.name = name
    }

    /// "inet berth", as nft commands name a table.
    public var description: String { "\(family.rawValue) \(name)" }

    /// IPv4 and IPv6 at the IP layer: masquerade (`ipMasq`) in chain `postrouting`.
    public static let ip = NFTTable(family: .inet, name: "berth")
    /// Frames on bridges: the MAC spoof check (`macspoofchk`) in chain `prerouting`.
    public static let bridge = NFTTable(family: .bridge, name: "berth")
}

/// A base chain: where it hooks into the kernel's path and what it does
/// with what no rule decides.
public struct NFTChain: Hashable, Sendable {
    public let table: NFTTable
    public let name: String
    /// "filter" or "nat".
    public let type: String
    /// "prerouting", "input", "forward", "output", "postrouting".
    public let hook: String
    /// A number or a named priority ("srcnat", "filter").
    public let priority: String
    /// "accept" or "drop".
    public let policy: String

    public init(table: NFTTable, name: String, type: String, hook: String, priority: String, policy: String = "accept") {
        self.table = table
        self.name = name
        self.type = type
        self.hook = hook
        self.priority = priority
        self.policy = policy
    }

    /// The chain ipMasq's rules go in.
    public static let masquerade = NFTChain(table: .ip, name: "postrouting", type: "nat", hook: "postrouting", priority: "srcnat")
    /// The chain macspoofchk's rules go in: before the bridge forwards anything.
    public static let macSpoof = NFTChain(table: .bridge, name: "prerouting", type: "filter", hook: "prerouting", priority: "-300")
}

/// nftables commands gathered and then applied as one transaction:
/// libnftables sends one buffer as one netlink batch, so either every command
/// holds or none does, and no other reader sees a state in between (a
/// policy change swaps its rules and set elements at once). Adding a table,
/// chain or set that exists is not an error, so each caller declares what
/// it uses. Names of chains and sets are nft identifiers, written bare: a
/// keyword ("policy", "counter") is refused by nft's parser, so Berth's
/// names never are one.
public struct NFTTransaction: Sendable {
    public private(set) var commands: [String] = []

    public init() {}

    public var isEmpty: Bool { commands.isEmpty }

    /// Declares `chain` (and its table).
    public mutating func add(_ chain: NFTChain) {
        add(chain.table)
        commands.append("add chain \(chain.table) \(chain.name) { type \(chain.type) hook \(chain.hook) priority \(chain.priority) ; policy \(chain.policy) ; }")
    }

    /// Declares `table`.
    public mutating func add(_ table: NFTTable) {
        let command = "add table \(table)"
        if !commands.contains(command) { commands.append(command) }
    }

    /// Declares a regular chain, one that base chains jump to.
    public mutating func addChain(_ name: String, in table: NFTTable) {
        add(table)
        commands.append("add chain \(table) \(name)")
    }

    /// Declares a named set of `type` ("ipv4_addr", "ipv6_addr",
    /// "inet_service") with `flags` ("interval" for prefixes).
    public mutating func addSet(_ name: String, in table: NFTTable, type: String, flags: [String] = []) {
        add(table)
        let flagText = flags.isEmpty ? "" : " flags \(flags.joined(separator: ",")) ;"
        commands.append("add set \(table) \(name) { type \(type) ;\(flagText) }")
    }

    /// Adds `elements` to set `name`; none is no command.
    public mutating func addElements(_ elements: [String], to name: String, in table: NFTTable) {
        guard !elements.isEmpty else { return }
        commands.append("add element \(table) \(name) { \(elements.joined(separator: ", ")) }")
    }

    /// Removes `elements` from set `name` (each must be there).
    public mutating func deleteElements(_ elements: [String], from name: String, in table: NFTTable) {
        guard !elements.isEmpty else { return }
        commands.append("delete element \(table) \(name) { \(elements.joined(separator: ", ")) }")
    }

    /// Empties set `name`.
    public mutating func flushSet(_ name: String, in table: NFTTable) {
        commands.append("flush set \(table) \(name)")
    }

    /// Empties chain `name`.
    public mutating func flushChain(_ name: String, in table: NFTTable) {
        commands.append("flush chain \(table) \(name)")
    }

    /// Appends rule `body` to `chain`, tagged with `comment` (which must
    /// hold no double quote: Berth's comments are made of names it validated).
    public mutating func addRule(_ body: String, to chain: String, in table: NFTTable, comment: String? = nil) {
        let tag = comment.map { " comment \"\($0)\"" } ?? ""
        commands.append("add rule \(table) \(chain) \(body)\(tag)")
    }

    /// Declares a named counter (`counter name "NAME"` in a rule counts into it).
    public mutating func addCounter(_ name: String, in table: NFTTable) {
        add(table)
        commands.append("add counter \(table) \(name)")
    }

    /// Removes a named counter no rule uses any more.
    public mutating func deleteCounter(_ name: String, from table: NFTTable) {
        commands.append("delete counter \(table) \(name)")
    }

    /// Removes chain `name` (empty, and no rule jumping to it).
    public mutating func deleteChain(_ name: String, from table: NFTTable) {
        commands.append("delete chain \(table) \(name)")
    }

    /// Removes set `name` (no rule using it).
    public mutating func deleteSet(_ name: String, from table: NFTTable) {
        commands.append("delete set \(table) \(name)")
    }

    /// Replaces `table` with an empty one (whether or not it existed).
    public mutating func recreate(_ table: NFTTable) {
        commands += ["add table \(table)", "delete table \(table)", "add table \(table)"]
    }

    /// Removes `table` and everything in it.
    public mutating func deleteTable(_ table: NFTTable) {
        commands.append("delete table \(table)")
    }

    /// Removes the rule with `handle` from `chain`.
    public mutating func deleteRule(handle: Int, from chain: String, in table: NFTTable) {
        commands.append("delete rule \(table) \(chain) handle \(handle)")
    }

    /// The commands as the one buffer libnftables is given.
    public var text: String { commands.joined(separator: "\n") }

    /// Applies every command at once; nothing when there is none. With a
    /// session, through its context (closed when the session closes).
    public func commit(in session: NFTSession? = nil) throws(FirewallError) {
        guard !commands.isEmpty else { return }
        if let session { try session.context.run(text) } else { try NFTContext().run(text) }
    }
}
