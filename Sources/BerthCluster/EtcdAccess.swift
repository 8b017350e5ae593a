import Foundation

/// How to reach etcd and who to be there: its URL, the TLS material (a CA to
/// trust, a client certificate and key) and an etcd user. Each setting comes
/// from a flag, else the environment, else the defaults file
/// (`/etc/default/berth-agent`, the same `KEY=VALUE` lines systemd's
/// `EnvironmentFile=` reads), else its default; where it came from is kept,
/// so that an error names the flag, variable or file line to fix.
public struct EtcdAccess: Sendable, Equatable {
    public enum Setting: String, CaseIterable, Sendable {
        case endpoint, caFile, certFile, keyFile, user, password, passwordFile

        /// The flag that gives it.
        public var flag: String {
            switch self {
            case .endpoint: return "--etcd"
            case .caFile: return "--etcd-cafile"
            case .certFile: return "--etcd-certfile"
            case .keyFile: return "--etcd-keyfile"
            case .user: return "--etcd-username"
            case .password: return "--etcd-password"
            case .passwordFile: return "--etcd-password-file"
            }
        }

        /// The environment variable (and defaults-file key) that gives it.
        public var variable: String {
            switch self {
            case .endpoint: return "BERTH_ETCD_ENDPOINT"
            case .caFile: return "BERTH_ETCD_CAFILE"
            case .certFile: return "BERTH_ETCD_CERTFILE"
            case .keyFile: return "BERTH_ETCD_KEYFILE"
            case .user: return "BERTH_ETCD_USERNAME"
            case .password: return "BERTH_ETCD_PASSWORD"
            case .passwordFile: return "BERTH_ETCD_PASSWORD_FILE"
            }
        }
    }

    public static let defaultEndpoint = "http://127.0.0.1:2379"
    /// The defaults file; `BERTH_AGENT_DEFAULTS` names another (tests, packages).
    public static let defaultsFile = "/etc/default/berth-agent"

    public var endpoint: String
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    public var user: String?
    public var password: String?
    /// Where each given setting came from: "--etcd-cafile", "BERTH_ETCD_CAFILE
    /// in the environment", "BERTH_ETCD_CAFILE at /etc/default/berth-agent:3".
    public var origins: [Setting: String] = [:]

    public init(endpoint: String, caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil,
                user: String? = nil, password: String? = nil) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.user = user
        self.password = password
    }

    /// What names a setting in a message: its origin, or its flag.
    public func origin(_ setting: Setting) -> String { origins[setting] ?? setting.flag }

    /// Whether requests go over TLS (an https:// endpoint).
    public var usesTLS: Bool { endpoint.lowercased().hasPrefix("https://") }

    /// The host and port of the endpoint.
    public var hostAndPort: (host: String, port: Int)? {
        guard let url = URL(string: endpoint), let host = url.host, !host.isEmpty else { return nil }
        return (host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host, url.port ?? 2379)
    }

    /// The settings from flags first, then `environment`, then the defaults
    /// file's text (`defaults`, read from `defaultsPath`), checked together:
    /// a problem is thrown in one line naming where the setting came from.
    public static func resolve(flags: [Setting: String], environment: [String: String],
                               defaults: String?, defaultsPath: String) throws(EtcdAccessError) -> EtcdAccess {
        let fileValues = try defaults.map { text throws(EtcdAccessError) in try parseDefaults(text, path: defaultsPath) } ?? [:]
        var values: [Setting: String] = [:]
        var origins: [Setting: String] = [:]
        for setting in Setting.allCases {
            if let v = flags[setting] {
                values[setting] = v; origins[setting] = setting.flag
            } else if let v = environment[setting.variable] {
                values[setting] = v; origins[setting] = "\(setting.variable) in the environment"
            } else if let (v, line) = fileValues[setting.variable] {
                values[setting] = v; origins[setting] = "\(setting.variable) at \(defaultsPath):\(line)"
            }
        }
        var access = EtcdAccess(endpoint: values[.endpoint] ?? defaultEndpoint, caFile: values[.caFile],
                                certFile: values[.certFile], keyFile: values[.keyFile], user: values[.user],
                                password: values[.password])
        access.origins = origins
        if let file = values[.passwordFile] {
            if values[.password] != nil {
                throw EtcdAccessError("\(access.origin(.password)) and \(access.origin(.passwordFile)): give one of them")
            }
            guard let data = FileManager.default.contents(atPath: file) else {
                throw EtcdAccessError("\(access.origin(.passwordFile)) \(file): cannot read it")
            }
            var text = String(decoding: data, as: UTF8.self)
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            guard !text.isEmpty else { throw EtcdAccessError("\(access.origin(.passwordFile)) \(file) is empty") }
            access.password = text
            access.origins[.password] = "\(access.origin(.passwordFile)) \(file)"
        }
        try access.check()
        return access
    }

    /// The settings' consistency (files are read when the client is made).
    public func check() throws(EtcdAccessError) {
        let lower = endpoint.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), let (host, port) = hostAndPort,
              !host.isEmpty, (1...65535).contains(port), URL(string: endpoint)?.path.isEmpty ?? false else {
            throw EtcdAccessError("\(origin(.endpoint)) \(endpoint): expected http://ADDRESS:PORT or https://ADDRESS:PORT")
        }
        if !usesTLS {
            for setting in [Setting.caFile, .certFile, .keyFile] where self[setting] != nil {
                throw EtcdAccessError("\(origin(setting)) is TLS material, but \(origin(.endpoint)) \(endpoint) is plain http: use https://")
            }
        }
        if (certFile == nil) != (keyFile == nil) {
            let given: Setting = certFile == nil ? .keyFile : .certFile
            let missing: Setting = certFile == nil ? .certFile : .keyFile
            throw EtcdAccessError("\(origin(given)) needs \(missing.flag) (\(missing.variable)) too: a client certificate goes with its key")
        }
        for setting in [Setting.caFile, .certFile, .keyFile] {
            if let path = self[setting], path.isEmpty { throw EtcdAccessError("\(origin(setting)) is empty") }
        }
        if let user, user.isEmpty { throw EtcdAccessError("\(origin(.user)) is empty") }
        if user != nil && password == nil {
            throw EtcdAccessError("\(origin(.user)) needs a password: \(Setting.password.flag), \(Setting.passwordFile.flag) or \(Setting.passwordFile.variable)")
        }
        if user == nil && password != nil {
            throw EtcdAccessError("\(origin(.password)) is given without a user (\(Setting.user.flag))")
        }
    }

    subscript(setting: Setting) -> String? {
        switch setting {
        case .endpoint: return endpoint
        case .caFile: return caFile
        case .certFile: return certFile
        case .keyFile: return keyFile
        case .user: return user
        case .password: return password
        case .passwordFile: return nil
        }
    }

    /// The `BERTH_ETCD_*` lines of a defaults file, with their line numbers:
    /// `KEY=VALUE`, `export KEY=VALUE`, a value in single or double quotes,
    /// `#` comments and blank lines. Other variables are left to whoever
    /// reads them (systemd, the init script); an unknown `BERTH_ETCD_*` or a
    /// line that is no assignment is an error naming its line.
    public static func parseDefaults(_ text: String, path: String) throws(EtcdAccessError) -> [String: (String, Int)] {
        let known = Set(Setting.allCases.map(\.variable))
        var values: [String: (String, Int)] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let eq = line.firstIndex(of: "="), !line[..<eq].isEmpty,
                  line[..<eq].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw EtcdAccessError("\(path):\(number): expected KEY=VALUE, not \(line.prefix(60))")
            }
            let key = String(line[..<eq])
            var value = String(line[line.index(after: eq)...])
            if let quote = value.first, quote == "\"" || quote == "'" {
                guard value.count >= 2, value.last == quote else {
                    throw EtcdAccessError("\(path):\(number): \(key): the quote \(quote) is not closed")
                }
                value = String(value.dropFirst().dropLast())
            }
            if key.hasPrefix("BERTH_ETCD_") && !known.contains(key) {
                throw EtcdAccessError("\(path):\(number): \(key) is not a setting (known: \(known.sorted().joined(separator: ", ")))")
            }
            if known.contains(key) { values[key] = (value, number) }
        }
        return values
    }
}

/// A setting of `EtcdAccess` that cannot be used, or TLS material that
/// cannot be loaded: one line naming the flag, variable or file.
public struct EtcdAccessError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
