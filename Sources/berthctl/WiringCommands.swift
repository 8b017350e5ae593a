import ArgumentParser
import BerthCNI
import BerthCNIClient
import BerthRuntime
import BerthSystem
import BerthJSON

/// Options every command that runs a network's plugins shares.
struct NetworkOptions: ParsableArguments {
    @Option(name: .customLong("cni-conf-dir"), help: "Where the network configs are.")
    var cniConfDirectory: String = NetworkList.defaultDirectory

    var cniPath: [String] {
        cniSearchPath
    }
}

struct NetnsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netns",
        abstract: "Named network namespaces, in the same files as `ip netns` (/run/netns).",
        subcommands: [Add.self, Delete.self, List.self, ExecIn.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a named network namespace.")
        @Argument(help: "The namespace's name (under /run/netns).", completion: .custom(completeNamespaces)) var name: String
        func run() throws { try NamedNamespaces.add(name) }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "del", abstract: "Remove a named network namespace (refused while it is attached to a network, unless --detach).")
        @Argument(help: "The namespace's name (under /run/netns).", completion: .custom(completeNamespaces)) var name: String
        @Flag(help: "Detach it from every network it is attached to first.") var detach = false
        func run() throws {
            let attached = Attachments.of(namespace: name)
            if !attached.isEmpty && !detach {
                let list = attached.map { "\($0.network) (\($0.ifname))" }.joined(separator: ", ")
                throw CLIError("network namespace \(name) is attached to \(list): berthctl detach NETWORK \(name) first, or netns del --detach")
            }
            for record in attached {
                try Attachments.detach(network: record.network, netns: record.netns, ifname: record.ifname)
            }
            try NamedNamespaces.delete(name)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the named network namespaces.")
        func run() throws { for name in NamedNamespaces.list() { print(name) } }
    }

    struct ExecIn: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "exec", abstract: "Run a command inside a network namespace.")
        @Argument(help: "The namespace's name (under /run/netns).", completion: .custom(completeNamespaces)) var name: String
        @Argument(parsing: .postTerminator) var command: [String] = []
        func validate() throws { if command.isEmpty { throw ValidationError("give the command to run after --") } }
        func run() throws {
            let code = try NamedNamespaces.exec(name, command: command)
            throw ExitCode(code)
        }
    }
}

/// Which attachment a command is about: attach, detach and check name it alike.
struct AttachmentTarget: ParsableArguments {
    @Argument(help: "The network's name (in its conflist).") var network: String
    @Argument(help: "A namespace name under /run/netns, or a path.") var netns: String
    @Option(help: "The interface name in the namespace.") var ifname: String = "eth0"
}

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach a network namespace to a CNI network: its whole plugin chain runs, as libcni runs it.")

    @OptionGroup var target: AttachmentTarget
    @Option(help: "Ask for this address (passed as runtimeConfig.ips to plugins declaring the ips capability).") var ip: String?
    @Option(help: "Ask for this MAC (runtimeConfig.mac, for plugins declaring the mac capability).") var mac: String?
    @Option(help: "The attachment's name on a network with names (args.cni.podName; '_' becomes '-').") var name: String?
    @OptionGroup var identity: PodIdentityOptions
    @OptionGroup var options: NetworkOptions

    func run() throws {
        let record = try Attachments.attach(network: target.network, netns: target.netns, ifname: target.ifname, ip: ip, mac: mac,
                                            namespace: identity.namespace, labels: try identity.labelMap(), name: name,
                                            cniConfDirectory: options.cniConfDirectory, cniPath: options.cniPath)
        print(record.result.serialized(pretty: true))
    }
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Detach a network namespace from a network (DEL in reverse, with the cached result).")
    @OptionGroup var target: AttachmentTarget
    func run() throws {
        if try !Attachments.detach(network: target.network, netns: target.netns, ifname: target.ifname) {
            writeError("berthctl: \(target.netns) is not attached to \(target.network) as \(target.ifname): nothing to do")
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run CHECK of a network's plugins for an attachment.")
    @OptionGroup var target: AttachmentTarget
    func run() throws {
        try Attachments.check(network: target.network, netns: target.netns, ifname: target.ifname)
        print("ok")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run STATUS of a network's plugins (cniVersion 1.1.0).")
    @Argument var network: String
    @OptionGroup var options: NetworkOptions
    func run() throws {
        try Attachments.status(network: network, cniConfDirectory: options.cniConfDirectory, cniPath: options.cniPath)
        print("ready")
    }
}

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Run GC of a network's plugins, keeping the recorded attachments and running containers.")
    @Argument var network: String
    @OptionGroup var options: NetworkOptions
    func run() throws {
        let running = ContainerRuntime.list().filter { $0.status == .running || $0.status == .paused }.flatMap { c in
            c.networks.filter { $0.network == network }.map { (containerID: c.name, ifname: $0.ifname) }
        }
        try Attachments.gc(network: network, cniConfDirectory: options.cniConfDirectory, cniPath: options.cniPath,
                           alsoValid: running)
    }
}

struct ListAttachments: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the attachments made with attach.")
    @Flag(help: "Print JSON instead of a table.") var json = false
    func run() throws {
        let records = Attachments.list()
        if json {
            print(JSON.array(records.map { r in
                .object(["network": .string(r.network), "netns": .string(r.netns), "ifname": .string(r.ifname),
                         "containerID": .string(r.containerID), "addresses": .array(r.addresses.map(JSON.string))])
            }).serialized(pretty: true))
            return
        }
        printTable([["NETWORK", "NETNS", "INTERFACE", "ADDRESSES"]] + records.map {
            [$0.network, $0.netns, $0.ifname, $0.addresses.isEmpty ? "-" : $0.addresses.joined(separator: ",")]
        })
    }
}

/// Shell completion of named network namespaces.
@Sendable func completeNamespaces(_ arguments: [String], _ index: Int, _ prefix: String) -> [String] {
    NamedNamespaces.list().filter { $0.hasPrefix(prefix) }
}
