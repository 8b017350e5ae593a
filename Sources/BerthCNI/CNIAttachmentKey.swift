import BerthNet

/// What CNI identifies an attachment by: the network's name, the container
/// ID and the interface name. Berth names its locks, cached results and
/// attachment records after it, in one form.
public struct CNIAttachmentKey: Hashable, Sendable, CustomStringConvertible {
    public let network: String
    public let containerID: String
    public let ifname: String

    public init(network: String, containerID: String, ifname: String) {
        self.network = network
        self.containerID = containerID
        self.ifname = ifname
    }

    /// `NETWORK:ID:IFNAME`. Network names and container IDs cannot hold ':'.
    public var description: String { "\(network):\(containerID):\(ifname)" }

    /// The key as a file name: shortened (`DerivedName`) past a file name's 255 bytes.
    public var fileName: String { DerivedName.fit(description, limit: 255) }
}
