#if canImport(Glibc)
import Glibc
#endif
import BerthCNIClient
import BerthSystem

extension ContainerRuntime {
    // MARK: Networks

    static let netnsRoot = "/run/berth/netns"

    /// Pins the container's network namespace at /run/berth/netns/NAME (so
    /// DEL can reach it after the container ends), then runs each network's
    /// plugin chain ADD. On failure, what was attached is detached again.
    static func attachNetworks(_ spec: ContainerSpec, pid: pid_t) throws(RuntimeError) -> [ContainerState.NetworkAttachment] {
        let pinned = "\(netnsRoot)/\(spec.name)"
        do {
            try DirectoryHandle.makeDirectories(netnsRoot)
        } catch {
            throw RuntimeError("cannot create \(netnsRoot): \(error)")
        }
        let fd = open(pinned, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        if fd < 0 { throw RuntimeError("cannot create \(pinned): \(SystemError.last("open"))") }
        close(fd)
        if mount("/proc/\(pid)/ns/net", pinned, nil, UInt(MS_BIND), nil) != 0 {
            let e = SystemError.last("bind-mount the network namespace")
            unlink(pinned)
            throw RuntimeError("\(e)")
        }
        var attached: [(PluginChain, PluginChain.Attachment, ContainerState.NetworkAttachment)] = []
        var servers: [String] = [], search: [String] = []
        do throws(ClientError) {
            for (i, network) in spec.networks.enumerated() {
                let list = try NetworkList.load(name: network, directory: spec.cniConfDirectory)
                let chain = PluginChain(list: list, searchPath: spec.cniPath)
                let attachment = PluginChain.Attachment(containerID: spec.name, netns: pinned, ifname: "eth\(i)", cniArgs: spec.cniArgs)
                let result = try chain.add(attachment)
                let addresses = (result["ips"]?.arrayValue ?? []).compactMap { $0["address"]?.stringValue }
                    + ["ip4", "ip6"].compactMap { result[$0]?["ip"]?.stringValue }
                attached.append((chain, attachment, .init(network: network, ifname: attachment.ifname, addresses: addresses)))
                let dns = result["dns"]
                servers += (dns?["nameservers"]?.arrayValue?.compactMap(\.stringValue) ?? []).filter { !servers.contains($0) }
                search += (dns?["search"]?.arrayValue?.compactMap(\.stringValue) ?? []).filter { !search.contains($0) }
            }
            // The networks' DNS servers (a network with names): the container's resolv.conf, bound over its /etc/resolv.conf.
            if !servers.isEmpty {
                var text = "# written by berth for container \(spec.name)\n" + servers.map { "nameserver \($0)\n" }.joined()
                if !search.isEmpty { text += "search \(search.joined(separator: " "))\n" }
                do throws(SystemError) {
                    let dir = try DirectoryHandle(path: stateDirectory(spec.name), create: false)
                    let scratch = try dir.writeScratch(Array(text.utf8), mode: 0o644)
                    try dir.publish(scratch, as: "resolv.conf", in: dir)
                } catch {
                    throw ClientError("cannot write the container's resolv.conf: \(error)")
                }
            }
        } catch {
            for (chain, attachment, _) in attached.reversed() { try? chain.del(attachment) }
            unpin(pinned)
            throw RuntimeError(error)
        }
        return attached.map(\.2)
    }

    /// Runs DEL for every network of the container (in reverse), then unpins its namespace.
    static func detachNetworks(_ state: ContainerState) {
        let pinned = "\(netnsRoot)/\(state.name)"
        for n in state.networks.reversed() {
            guard let list = try? NetworkList.load(name: n.network, directory: state.cniConfDirectory) else { continue }
            let chain = PluginChain(list: list, searchPath: state.cniPath)
            try? chain.del(PluginChain.Attachment(containerID: state.name, netns: pinned, ifname: n.ifname))
        }
        unpin(pinned)
    }

    static func unpin(_ path: String) {
        umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }

}
