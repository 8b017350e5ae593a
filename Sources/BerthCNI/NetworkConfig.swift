import BerthJSON
/// The fields every CNI network config has, read and checked.
public struct NetworkConfig: Sendable {
    public var cniVersion: CNIVersion
    public var name: String
    public var type: String
    /// `ipam.type`, or nil when the config has no IPAM (a layer-2 only network).
    public var ipamType: String?
    /// `dns` of the config.
    public var dns: CNIResult.DNS
    /// `prevResult` as given (a chained plugin's input).
    public var prevResult: JSON?
    /// The whole config object.
    public var raw: JSONObject

    /// Decodes a config from stdin bytes: JSON errors are 6, an unsupported
    /// `cniVersion` is 1, a bad field is 7 naming it.
    public static func decode(_ bytes: [UInt8]) throws(CNIError) -> (NetworkConfig, FieldReader) {
        let object = try decodeObject(bytes)
        let r = FieldReader(object)
        return (try NetworkConfig(r), r)
    }

    /// Parses stdin as a JSON object (error 6 otherwise).
    public static func decodeObject(_ bytes: [UInt8]) throws(CNIError) -> JSONObject {
        let json: JSON
        do {
            json = try JSON.parse(bytes)
        } catch {
            throw CNIError(.decodeFailure, "network config is not valid JSON: \(error)")
        }
        guard let object = json.objectValue else {
            throw CNIError(.decodeFailure, "network config must be a JSON object, got \(json.typeName)")
        }
        return object
    }

    /// The version to print errors in: the config's own when it is valid and
    /// supported, the newest otherwise.
    public static func replyVersion(for bytes: [UInt8]) -> CNIVersion {
        guard let json = try? JSON.parse(bytes), let text = json["cniVersion"]?.stringValue,
              let v = CNIVersion(text), CNIVersion.supported.contains(v) else { return .latest }
        return v
    }

    /// Reads `cniVersion` alone: missing means 0.1.0 (as libcni decides).
    public static func version(_ r: FieldReader) throws(CNIError) -> CNIVersion {
        guard let text = try r.string("cniVersion"), !text.isEmpty else { return .implicit }
        guard let v = CNIVersion(text) else {
            throw CNIError(.incompatibleVersion, "cniVersion \"\(text)\" is not a version (expected MAJOR.MINOR.PATCH)")
        }
        guard CNIVersion.supported.contains(v) else {
            throw CNIError(.incompatibleVersion, "cniVersion \(text) is not supported",
                           details: "supported versions: " + CNIVersion.supported.map(\.description).joined(separator: ", "))
        }
        return v
    }

    public init(_ r: FieldReader) throws(CNIError) {
        cniVersion = try NetworkConfig.version(r)
        name = try r.requiredString("name")
        if let problem = NetworkConfig.networkNameProblem(name) {
            throw r.error("name", "\"\(name)\" is invalid: \(problem)")
        }
        type = try r.string("type") ?? ""
        if let ipam = try r.object("ipam"), let t = try ipam.string("type"), !t.isEmpty {
            if t.contains("/") || t == "." || t == ".." {
                throw ipam.error("type", "\"\(t)\" must be a plugin name found on CNI_PATH, not a path")
            }
            ipamType = t
        } else {
            ipamType = nil
        }
        dns = try r.object("dns").map { (d) throws(CNIError) in try CNIResult.readDNS(d) } ?? CNIResult.DNS()
        prevResult = r.object["prevResult"].flatMap { $0 == .null ? nil : $0 }
        raw = r.object
    }

    /// Why `name` cannot be a network name, or nil: names are used in file
    /// paths, so they follow the spec's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
    public static func networkNameProblem(_ name: String) -> String? {
        if name == "." || name == ".." { return "it may not be \".\" or \"..\"" }
        return CNIEnvironment.containerIDProblem(name)
    }
}

extension NetworkConfig {
    /// The attachments GC must keep: `cni.dev/valid-attachments` (or the
    /// older `cni.dev/attachments`), each `{containerID, ifname}`.
    public static func validAttachments(_ r: FieldReader) throws(CNIError) -> [(containerID: String, ifname: String)] {
        let key = r.has("cni.dev/valid-attachments") ? "cni.dev/valid-attachments" : "cni.dev/attachments"
        guard let items = try r.objects(key) else {
            throw r.error("cni.dev/valid-attachments", "is required for GC")
        }
        var out: [(containerID: String, ifname: String)] = []
        for item in items {
            out.append((try item.requiredString("containerID"), try item.requiredString("ifname")))
        }
        return out
    }
}
