import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import BerthNet

/// A file's identity and version as `stat` gives them: a certificate
/// replaced on disk (renamed over, or rewritten) shows as a different stamp.
struct FileStamp: Equatable, Sendable {
    var inode: UInt64 = 0
    var size: Int64 = 0
    var seconds: Int = 0
    var nanoseconds: Int = 0

    init?(_ path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        seconds = st.st_mtim.tv_sec
        nanoseconds = st.st_mtim.tv_nsec
    }
}

/// The TLS side of `EtcdAccess`, loaded and checked: the CA to trust, the
/// client certificate and key (their match, their dates), as AsyncHTTPClient
/// is given them (swift-nio-ssl does the TLS), and the files' stamps.
struct EtcdTLSMaterial: @unchecked Sendable {
    let configuration: TLSConfiguration
    let stamps: [FileStamp?]
    /// What was loaded, for the log: "client certificate CN=..., valid until ...".
    let summary: String

    static func files(_ access: EtcdAccess) -> [String] {
        [access.caFile, access.certFile, access.keyFile].compactMap { $0 }
    }

    static func stamps(_ access: EtcdAccess) -> [FileStamp?] { files(access).map(FileStamp.init) }

    static func load(_ access: EtcdAccess, now: Date = Date()) throws(EtcdAccessError) -> EtcdTLSMaterial {
        var configuration = TLSConfiguration.makeClientConfiguration()
        var parts: [String] = []
        // The stamps before reading: a file replaced while it is read is seen as changed next time.
        let stamps = stamps(access)
        if let ca = access.caFile {
            let roots = try certificates(ca, access.origin(.caFile))
            configuration.trustRoots = .certificates(roots)
            parts.append("\(roots.count) CA certificate\(roots.count == 1 ? "" : "s") from \(ca)")
        }
        if let certFile = access.certFile, let keyFile = access.keyFile {
            let chain = try certificates(certFile, access.origin(.certFile))
            let leaf = chain[0]
            let seconds = Int(now.timeIntervalSince1970)
            if leaf.notValidAfter < seconds {
                throw EtcdAccessError("\(access.origin(.certFile)) \(certFile): the client certificate expired on \(EtcdTLSMaterial.date(leaf.notValidAfter))")
            }
            if leaf.notValidBefore > seconds {
                throw EtcdAccessError("\(access.origin(.certFile)) \(certFile): the client certificate is not valid before \(EtcdTLSMaterial.date(leaf.notValidBefore))")
            }
            guard FileManager.default.isReadableFile(atPath: keyFile) else {
                throw EtcdAccessError("\(access.origin(.keyFile)) \(keyFile): cannot read it")
            }
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
            } catch {
                throw EtcdAccessError("\(access.origin(.keyFile)) \(keyFile): not a PEM private key (or one with a passphrase)")
            }
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(key)
            do {
                _ = try NIOSSLContext(configuration: configuration)
            } catch {
                throw EtcdAccessError("\(access.origin(.keyFile)) \(keyFile): the key does not belong to the certificate in \(certFile) (\(error))")
            }
            parts.append("client certificate \(certFile) (serial \(hexSerial(leaf)), valid until \(EtcdTLSMaterial.date(leaf.notValidAfter)))")
        }
        if parts.isEmpty { parts.append("the system's CA certificates") }
        return EtcdTLSMaterial(configuration: configuration, stamps: stamps, summary: parts.joined(separator: ", "))
    }

    private static func certificates(_ path: String, _ origin: String) throws(EtcdAccessError) -> [NIOSSLCertificate] {
        guard FileManager.default.isReadableFile(atPath: path) else { throw EtcdAccessError("\(origin) \(path): cannot read it") }
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw EtcdAccessError("\(origin) \(path): holds no PEM certificate")
        }
        guard !certificates.isEmpty else { throw EtcdAccessError("\(origin) \(path): holds no PEM certificate") }
        return certificates
    }

    static func hexSerial(_ certificate: NIOSSLCertificate) -> String {
        certificate.serialNumber.map { String(format: "%02x", $0) }.joined()
    }

    static func date(_ seconds: time_t) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    /// The names a certificate is valid for (its subject alternative names).
    static func names(_ certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { name in
            switch name.nameType {
            case .dnsName: return "DNS:" + String(decoding: name.contents, as: UTF8.self)
            case .ipAddress: return IPAddress(bytes: Array(name.contents)).map { "IP:\($0)" }
            default: return nil
            }
        }
    }
}

/// Why a TLS connection to etcd failed, found out the way `openssl s_client`
/// would be used by hand: a second handshake that only looks at the
/// server's certificate (swift-nio-ssl's verification callback receives it)
/// and gives up, so that "verify failed" becomes "expired on DATE", "not
/// valid for ADDRESS (it names ...)" or "not signed by the CA in FILE".
enum EtcdTLSDiagnosis {
    /// The server's certificate chain, or nil when no handshake got that far.
    static func serverChain(host: String, port: Int) async -> [NIOSSLCertificate]? {
        let captured = NIOLockedValueBox<[NIOSSLCertificate]?>(nil)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .noHostnameVerification
        guard let context = try? NIOSSLContext(configuration: tls) else { return nil }
        // The handshake ends at the verification, which fails on purpose.
        let connected = await connectAndWait(host: host, port: port) { channel, sni in
            let handler = try NIOSSLClientHandler(context: context, serverHostname: sni, customVerificationCallback: { chain, promise in
                captured.withLockedValue { $0 = chain }
                promise.succeed(.failed)
            })
            try channel.pipeline.syncOperations.addHandler(handler)
        }
        guard connected else { return nil }
        return captured.withLockedValue { $0 }
    }

    /// What a whole handshake with this client's own material ends in: the
    /// error text (an alert of the server's refusing the client certificate
    /// arrives after the client's side of a TLS 1.3 handshake is done, on
    /// the first read), nil when the server answered a request.
    static func handshakeError(host: String, port: Int, configuration: TLSConfiguration) async -> String? {
        final class Recorder: ChannelInboundHandler, @unchecked Sendable {
            typealias InboundIn = ByteBuffer
            let result: NIOLockedValueBox<String?>
            init(_ result: NIOLockedValueBox<String?>) { self.result = result }
            func channelActive(context: ChannelHandlerContext) {
                let request = "POST /v3/maintenance/status HTTP/1.1\r\nHost: etcd\r\nContent-Length: 2\r\n\r\n{}"
                context.writeAndFlush(NIOAny(ByteBuffer(string: request)), promise: nil)
            }
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                result.withLockedValue { if $0 == nil { $0 = "" } }
                context.close(promise: nil)
            }
            func errorCaught(context: ChannelHandlerContext, error: Error) {
                result.withLockedValue { if $0 == nil { $0 = String(describing: error) } }
                context.close(promise: nil)
            }
        }
        let result = NIOLockedValueBox<String?>(nil)
        var tls = configuration
        tls.certificateVerification = .none
        guard let context = try? NIOSSLContext(configuration: tls) else { return nil }
        let connected = await connectAndWait(host: host, port: port) { channel, sni in
            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: sni))
            try channel.pipeline.syncOperations.addHandler(Recorder(result))
        }
        guard connected else { return nil }
        let text = result.withLockedValue { $0 }
        return text?.isEmpty == true ? nil : (text ?? "the connection was closed without an answer")
    }

    /// Connects to `host`, sets the channel up with `handlers` (given the
    /// name to send as SNI: none for an address) and waits until the
    /// channel closes, 2 s at most; false when it did not connect.
    private static func connectAndWait(host: String, port: Int,
                                       _ handlers: @escaping @Sendable (Channel, String?) throws -> Void) async -> Bool {
        let sni = IPAddress(host) == nil ? host : nil
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try handlers(channel, sni) } }
        guard let channel = try? await bootstrap.connect(host: host, port: port).get() else { return false }
        let deadline = channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
        deadline.cancel()
        return true
    }

    /// One line on a failed verification of the server's certificate.
    static func explainVerification(_ access: EtcdAccess, hostnameFailed: Bool) async -> String {
        let target = access.endpoint
        guard let (host, port) = access.hostAndPort, let chain = await serverChain(host: host, port: port), let leaf = chain.first else {
            return hostnameFailed ? "the certificate of etcd at \(target) is not valid for \(access.hostAndPort?.host ?? target)"
                                  : "the certificate of etcd at \(target) could not be verified"
        }
        let now = Int(Date().timeIntervalSince1970)
        let names = EtcdTLSMaterial.names(leaf)
        let named = names.isEmpty ? "it names no address or host" : "it names \(names.joined(separator: ", "))"
        if hostnameFailed {
            return "the certificate of etcd at \(target) is not valid for \(host): \(host) is not in its subject alternative names (\(named))"
        }
        if leaf.notValidAfter < now {
            return "the certificate of etcd at \(target) expired on \(EtcdTLSMaterial.date(leaf.notValidAfter)) (serial \(EtcdTLSMaterial.hexSerial(leaf)))"
        }
        if leaf.notValidBefore > now {
            return "the certificate of etcd at \(target) is not valid before \(EtcdTLSMaterial.date(leaf.notValidBefore))"
        }
        let ca = access.caFile.map { "the CA in \($0) (\(access.origin(.caFile)))" } ?? "a CA of the system's (give --etcd-cafile)"
        return "the certificate of etcd at \(target) is not signed by \(ca): unknown CA (serial \(EtcdTLSMaterial.hexSerial(leaf)), \(named))"
    }
}
