using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Xml;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Hl7.Fhir.Utility;
using Hl7.Fhir.Validation;
using MagCds.Core.Evaluation;
using Microsoft.Extensions.ObjectPool;
using Microsoft.Net.Http.Headers;

namespace MagCds.Service.FhirRest;

public enum FhirFormat { Json, Xml }

/// <summary>
/// FHIR wire formats: reading a request body (JSON or XML, size-limited, no DTDs) with the Firely deserializers,
/// negotiating the response format (_format, then Accept, then the request's own format), and writing resources.
/// </summary>
public static class FhirWire
{
    public const string JsonMediaType = "application/fhir+json";
    public const string XmlMediaType = "application/fhir+xml";

    private static readonly FhirJsonDeserializer Json = new(new DeserializerSettings());
    private static readonly FhirJsonDeserializer JsonUnknownMembersIgnored = new(new DeserializerSettings { AcceptUnknownMembers = true });
    private static readonly FhirXmlDeserializer Xml = new(new DeserializerSettings());

    /// <summary>Deepest nesting accepted in either format; real FHIR resources stay far below it.</summary>
    private const int MaxDepth = 128;

    private static readonly XmlReaderSettings SafeXml = new()
    {
        DtdProcessing = DtdProcessing.Prohibit, // no DTD, so no external entities (XXE) and no entity expansion
        XmlResolver = null,
        MaxCharactersFromEntities = 0,
        IgnoreComments = true,
    };

    public static FhirFormat? FromMediaType(string? mediaType)
    {
        if (mediaType is null || !MediaTypeHeaderValue.TryParse(mediaType, out var mt)) return null;
        // A media type may name the FHIR version (R4 versioning.html): MagCds reads and writes R4 (4.0) only.
        if (mt.Parameters.FirstOrDefault(p => p.Name.Equals("fhirVersion", StringComparison.OrdinalIgnoreCase))?.Value.Value is { } version
            && version.Trim('"') is not ("4.0" or "4.0.0" or "4.0.1")) return null;
        return mt.MediaType.Value?.ToLowerInvariant() switch
        {
            "application/fhir+json" or "application/json+fhir" or "application/json" or "text/json" => FhirFormat.Json,
            "application/fhir+xml" or "application/xml+fhir" or "application/xml" or "text/xml" => FhirFormat.Xml,
            _ => null,
        };
    }

    /// <summary>The format of the request body; a body of another type, or in another charset than UTF-8, is refused with 415.</summary>
    public static FhirFormat RequestFormat(HttpRequest request)
    {
        var format = FromMediaType(request.ContentType)
            ?? throw new FhirRequestException(StatusCodes.Status415UnsupportedMediaType, OutcomeCodes.UnsupportedMediaType,
                $"Content-Type must be {JsonMediaType} or {XmlMediaType} (FHIR R4: fhirVersion=4.0 when a version is named).");
        // FHIR bodies are UTF-8 (R4 http.html): a declared Latin-1 or UTF-16 body is refused as such, not read as
        // UTF-8 until a byte happens not to fit (US-ASCII, a subset of UTF-8, is read as it is).
        if (MediaTypeHeaderValue.Parse(request.ContentType).Charset.Value is { Length: > 0 } charset
            && charset.Trim('"').ToLowerInvariant() is not ("utf-8" or "utf8" or "us-ascii"))
            throw new FhirRequestException(StatusCodes.Status415UnsupportedMediaType, OutcomeCodes.UnsupportedMediaType,
                $"The body must be UTF-8 (FHIR R4); Content-Type names the charset '{charset.Trim('"')}'.");
        return format;
    }

    /// <summary>The response format: _format, then Accept, then the request's own format, else JSON (R4 http.html).</summary>
    public static FhirFormat ResponseFormat(HttpRequest request, FhirFormat? requestFormat)
    {
        if (request.Query["_format"].FirstOrDefault() is { Length: > 0 } f)
        {
            // "application/fhir+xml" written into a URL unencoded arrives with a space for the "+"; only the media
            // type itself is mended, not a space before a parameter ("; fhirVersion=3.0").
            int semicolon = f.IndexOf(';');
            f = semicolon < 0 ? f.Replace(' ', '+') : f[..semicolon].Replace(' ', '+') + f[semicolon..];
            return f.ToLowerInvariant() switch
            {
                "json" => FhirFormat.Json,
                "xml" => FhirFormat.Xml,
                _ => FromMediaType(f) ?? throw NotAcceptable(),
            };
        }
        if (!MediaTypeHeaderValue.TryParseList(request.Headers.Accept.OfType<string>().ToList(), out var accepts) || accepts.Count == 0)
            return requestFormat ?? FhirFormat.Json;
        foreach (var tier in accepts.Where(a => a.Quality != 0).GroupBy(a => a.Quality ?? 1.0).OrderByDescending(g => g.Key))
        {
            var offered = tier.Select(a => FromMediaType(a.ToString())
                                           ?? (a.MatchesAllTypes || a.MediaType.Equals("application/*") ? requestFormat ?? FhirFormat.Json : null))
                              .Where(f => f is not null).Select(f => f!.Value).ToList();
            // Among formats the client takes equally, the one it sent its body in.
            if (offered.Count > 0) return requestFormat is { } sent && offered.Contains(sent) ? sent : offered[0];
        }
        throw NotAcceptable();
    }

    private static FhirRequestException NotAcceptable() =>
        new(StatusCodes.Status406NotAcceptable, OutcomeCodes.NotAcceptable, $"MagCds answers in {JsonMediaType} or {XmlMediaType}.");

    /// <summary>Reads the whole body as UTF-8 bytes, refusing more than <paramref name="limit"/> bytes with 413.</summary>
    public static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpRequest request, long limit, CancellationToken ct)
    {
        // Each door has its own limit; Kestrel's server-wide one (30 MB by default) is set to it for this request.
        if (request.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } kestrel)
            kestrel.MaxRequestBodySize = limit + 1;
        if (request.ContentLength > limit) throw TooLarge(limit);
        // A compressed body would otherwise read as bytes that are not UTF-8 (a misleading 400); the 415 answer
        // carries Accept-Encoding: identity (RFC 9110 §15.5.16).
        if (request.Headers.ContentEncoding.Any(e => e is { Length: > 0 } && !e.Equals("identity", StringComparison.OrdinalIgnoreCase)))
            throw new FhirRequestException(StatusCodes.Status415UnsupportedMediaType, OutcomeCodes.UnsupportedMediaType,
                "The body is content-encoded (e.g. gzip); MagCds takes bodies without Content-Encoding.");
        var buffer = new MemoryStream(request.ContentLength is > 0 and var n && n <= limit ? (int)n : 16 * 1024);
        var chunk = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(chunk, ct)) > 0)
            {
                if (buffer.Length + read > limit) throw TooLarge(limit);
                buffer.Write(chunk, 0, read);
            }
        }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(chunk); }
        var body = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        if (!System.Text.Unicode.Utf8.IsValid(body.Span))
            throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.Unparseable, "The body is not valid UTF-8.");
        return body;
    }

    private static FhirRequestException TooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, OutcomeCodes.PayloadTooLarge, $"The body is larger than the limit of {limit} bytes.");

    /// <summary>
    /// Parses a resource. Errors inside one Bundle entry's resource do not sink the whole Bundle: that entry is
    /// dropped and reported in <see cref="ParsedBody.BadEntries"/>; any other error refuses the body with 400.
    /// </summary>
    /// <param name="ignoreUnknownMembers">
    /// JSON elements R4 does not define are skipped instead of refused (every value is still checked): for data
    /// another server produced, such as a CDS Hooks prefetch, which must be read as MagCds reads that server's own answers.
    /// </param>
    public static ParsedBody Parse(ReadOnlyMemory<byte> body, FhirFormat format, bool ignoreUnknownMembers = false)
    {
        var parsed = ParseSyntax(body, format, ignoreUnknownMembers);
        // XML cannot carry such characters at all; a JSON escape can. Scanned on the bytes, so a body without any costs
        // a search for a backslash; only then are the entries looked at one by one.
        return format == FhirFormat.Json && ControlCharacterAt(body.Span) is { } at ? WithoutControlCharacters(parsed, body.Span, at) : parsed;
    }

    /// <summary>
    /// FHIR strings hold no control characters but tab, CR and LF (R4 datatypes, string), and U+FFFE/U+FFFF are no
    /// characters at all; XML cannot write either, so an answer quoting one in XML would fail half-written. A Bundle
    /// entry holding one (in its resource, its fullUrl, its request) is a bad entry like any other; anywhere else the
    /// body is refused.
    /// </summary>
    private static ParsedBody WithoutControlCharacters(ParsedBody parsed, ReadOnlySpan<byte> body, int at)
    {
        if (parsed.Resource is Bundle bundle)
        {
            var bad = new Dictionary<int, string>(parsed.BadEntries);
            for (int i = 0; i < bundle.Entry.Count; i++)
            {
                if (!HoldsControlCharacter(new Bundle { Entry = [bundle.Entry[i]] })) continue;
                bad[i] = ControlCharacterText + ".";
                bundle.Entry[i].Resource = null;
            }
            // One in the Bundle's own elements sinks the body.
            var entries = bundle.Entry;
            bundle.Entry = [];
            bool outside = HoldsControlCharacter(bundle);
            bundle.Entry = entries;
            if (!outside) return new ParsedBody(bundle, bad);
        }
        int lineStart = body[..at].LastIndexOf((byte)'\n') + 1;
        throw Unparseable($"{ControlCharacterText} (line {body[..at].Count((byte)'\n') + 1}, byte {at - lineStart + 1}).");
    }

    private const string ControlCharacterText = "A string holds a control character or a non-character (U+FFFE, U+FFFF) that FHIR strings may not hold";

    /// <summary>Whether a resource, written as JSON (which escapes every such character), holds one.</summary>
    private static bool HoldsControlCharacter(Resource r)
    {
        var scratch = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(scratch)) JsonOut.Serialize(r, w);
        return ControlCharacterAt(scratch.WrittenSpan) is not null;
    }

    /// <summary>Where the first JSON escape of a character FHIR strings may not hold is, if any.</summary>
    private static int? ControlCharacterAt(ReadOnlySpan<byte> json)
    {
        int at = json.IndexOf((byte)'\\');
        while (at >= 0 && at + 1 < json.Length)
        {
            byte kind = json[at + 1];
            if (kind is (byte)'b' or (byte)'f') return at;
            int length = 2;
            if (kind == (byte)'u' && at + 6 <= json.Length
                && System.Buffers.Text.Utf8Parser.TryParse(json.Slice(at + 2, 4), out ushort c, out int used, 'X') && used == 4)
            {
                if (c is (< 0x20 and not (0x09 or 0x0A or 0x0D)) or 0xFFFE or 0xFFFF) return at;
                length = 6;
            }
            int next = json[(at + length)..].IndexOf((byte)'\\');
            at = next < 0 ? -1 : at + length + next;
        }
        return null;
    }

    private static ParsedBody ParseSyntax(ReadOnlyMemory<byte> body, FhirFormat format, bool ignoreUnknownMembers)
    {
        Resource? resource;
        IEnumerable<CodedException> errors;
        bool trailing = false;
        try
        {
            if (format == FhirFormat.Json)
            {
                // A UTF-8 byte order mark (some Windows-based engines send one) is not part of the JSON text.
                var json = body.Span.StartsWith("\uFEFF"u8) ? body.Span[3..] : body.Span;
                var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = MaxDepth });
                (ignoreUnknownMembers ? JsonUnknownMembersIgnored : Json).TryDeserializeResource(ref reader, out resource, out errors);
                // The deserializer stops after the first JSON value; anything after it would be silently ignored.
                trailing = json[(int)reader.BytesConsumed..].Trim(" \t\r\n"u8).Length > 0;
            }
            else
            {
                using var stream = MemoryMarshal.TryGetArray(body, out ArraySegment<byte> a)
                    ? new MemoryStream(a.Array!, a.Offset, a.Count, writable: false)
                    : new MemoryStream(body.ToArray(), writable: false);
                CheckXmlDepth(stream);
                // Read as the UTF-8 the body was checked to be: an encoding declaration (ISO-8859-1) must not re-read
                // it (FHIR bodies are UTF-8), or "µ" would become "Âµ" without a word.
                using var text = new StreamReader(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: true, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: false);
                using var reader = XmlReader.Create(text, SafeXml);
                Xml.TryDeserializeResource(reader, out resource, out errors);
            }
        }
        catch (Exception e) when (e is not (FhirRequestException or OperationCanceledException))
        {
            // Beyond their documented exceptions, the Firely parsers throw IndexOutOfRange, NullReference, InvalidCast
            // and NotSupported on some malformed bodies (found by fuzzing, tests/fuzz): to the caller every one of them
            // is a body that cannot be read (400), never a 500.
            throw Unparseable(e switch
            {
                // A DTD is refused before the reader counts lines (position 0): say what is refused, not "not well-formed".
                XmlException when body.Span.IndexOf("<!DOCTYPE"u8) >= 0 => "the XML has a document type declaration (<!DOCTYPE …>), which MagCds refuses (FHIR XML has none; a DTD can pull in external entities).",
                XmlException x => $"the XML is not well-formed (line {x.LineNumber}, position {x.LinePosition}).",
                JsonException j => $"the JSON is not well-formed or nested deeper than {MaxDepth} levels (line {j.LineNumber + 1}, byte {j.BytePositionInLine + 1}).",
                _ => "the parser could not read it.",
            });
        }

        var list = errors.ToList();
        if (trailing && list.Count == 0) throw Unparseable("there is more data after the resource.");
        var describe = Describer(list);
        string Reported() => string.Join(" ", list.Take(5).Select(describe));
        // A JSON null in Bundle.entry stays in the list as a null, and the parser reports it at the index after the
        // last entry: the null becomes an empty entry reported at its own place, and that misplaced report is dropped.
        var nullEntries = new Dictionary<int, string>();
        try
        {
            if (resource is Bundle withNulls && withNulls.Entry.Contains(null!))
            {
                for (int i = 0; i < withNulls.Entry.Count; i++)
                    if (withNulls.Entry[i] is null) { withNulls.Entry[i] = new Bundle.EntryComponent(); nullEntries[i] = "The entry is null."; }
                list.RemoveAll(e => EntryIndex(e) >= withNulls.Entry.Count);
            }
        }
        catch (CodedValidationException)
        {
            // "entry" was not even a list (found by fuzzing): the Bundle itself is unreadable. This is the first read
            // of Bundle.entry, so every later one below finds a list.
            throw Unparseable(Reported());
        }
        if (list.Count == 0 && resource is not null) return new ParsedBody(resource, nullEntries);
        if (resource is Bundle bundle && list.All(e => EntryIndex(e) is not null))
        {
            var bad = list.GroupBy(e => EntryIndex(e)!.Value)
                .ToDictionary(g => g.Key, g => string.Join(" ", g.Select(describe)));
            foreach (var (i, why) in nullEntries) bad.TryAdd(i, why);
            // A half-read resource must never reach a door (reading its invalid status code would throw, found by
            // fuzzing a CDS Hooks prefetch): a bad entry keeps its place, for the reports by index, without its resource.
            foreach (int i in bad.Keys) if (i < bundle.Entry.Count) bundle.Entry[i].Resource = null;
            return new ParsedBody(bundle, bad);
        }
        throw Unparseable(Reported());
    }

    /// <summary>
    /// The XML deserializer recurses once per element and has no depth limit of its own, so a deeply nested document
    /// would overflow the stack and end the process (found by the hostile-input corpus). JSON has the reader's MaxDepth;
    /// XML gets the same limit from a first pass over the document.
    /// </summary>
    private static void CheckXmlDepth(MemoryStream stream)
    {
        // Read as the UTF-8 the body is, with the parse's own encoding (whose preamble makes the reader skip a byte
        // order mark): an encoding declaration ("UTF-16") is not followed.
        using (var text = new StreamReader(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: true), detectEncodingFromByteOrderMarks: false, leaveOpen: true))
        using (var scan = XmlReader.Create(text, SafeXml))
            while (scan.Read())
                if (scan.Depth > MaxDepth) throw Unparseable($"the document is nested deeper than {MaxDepth} levels.");
        stream.Position = 0;
    }

    private static FhirRequestException Unparseable(string detail) =>
        new(StatusCodes.Status400BadRequest, OutcomeCodes.Unparseable, "The body is not a valid FHIR R4 resource: " + detail);

    /// <summary>The Bundle entry an error belongs to, from its instance path "Bundle.entry[3]...".</summary>
    private static int? EntryIndex(CodedException e)
    {
        string? path = (e as CodedValidationException)?.InstancePath;
        const string prefix = "Bundle.entry[";
        if (path is null || !path.StartsWith(prefix, StringComparison.Ordinal)) return null;
        int end = path.IndexOf(']', prefix.Length);
        return end > 0 && int.TryParse(path.AsSpan(prefix.Length, end - prefix.Length), out int i) ? i : null;
    }

    /// <summary>
    /// A parser error as the answer states it: what is wrong (Firely's fixed description and code) and where, never
    /// the text it quotes. A bad value may be a name or an identifier, and error bodies end up in engines' error
    /// queues, alerts and tickets.
    /// </summary>
    private static Func<CodedException, string> Describer(IReadOnlyList<CodedException> errors)
    {
        // A name the parser did not know (an element, a resource type) is text from the body too: paths are cut before it.
        var unknown = errors.OfType<ExtendedCodedException>()
            .Where(e => e.ErrorCode is "PVAL128" or "PVAL130" && e.InstancePath is not null).Select(e => e.InstancePath!).ToList();
        return e => e is ExtendedCodedException x
            ? $"{x.Display} ({x.ErrorCode}) at {SafePath(x.InstancePath, unknown)}" + (x.LineNumber > 0 ? $", line {x.LineNumber}, position {x.Position}." : ".")
            : $"error {e.ErrorCode}.";
    }

    private static string SafePath(string? path, IReadOnlyList<string> unknown)
    {
        if (path is null) return "the resource";
        foreach (var u in unknown)
            if (path == u || path.StartsWith(u + ".", StringComparison.Ordinal) || path.StartsWith(u + "[", StringComparison.Ordinal))
                path = u.LastIndexOf('.') is var dot and > 0 ? u[..dot] : "";
        int first = path.IndexOf('.');
        string root = first < 0 ? path : path[..first];
        return root == "$this" || ModelInfo.IsKnownResource(root) ? path : "the resource";
    }

    private static readonly FhirJsonSerializer JsonOut = new();
    private static readonly FhirXmlSerializer XmlOut = new();
    // A buffer of two chunks stays below the large-object heap threshold (85,000 bytes); only one answer part larger
    // than a chunk makes it grow past that.
    private const int ChunkBytes = 32 * 1024;

    /// <summary>
    /// JSON is written straight into a reused buffer: a Utf8JsonWriter over a Stream starts with a small buffer of its
    /// own and grows it (allocate, copy) for every long text in an answer, on every request; the DetectedIssue's
    /// detail alone is several kilobytes. A buffer that had to grow (one very large resource) is not kept, so pooled
    /// buffers stay off the large-object heap; at most 32 are kept (2 MiB), whatever the number of cores.
    /// </summary>
    private static readonly ObjectPool<ArrayBufferWriter<byte>> JsonBuffers =
        new DefaultObjectPool<ArrayBufferWriter<byte>>(new JsonBufferPolicy(), 32);

    private sealed class JsonBufferPolicy : IPooledObjectPolicy<ArrayBufferWriter<byte>>
    {
        public ArrayBufferWriter<byte> Create() => new(2 * ChunkBytes);

        public bool Return(ArrayBufferWriter<byte> buffer)
        {
            if (buffer.Capacity > 2 * ChunkBytes) return false;
            buffer.ResetWrittenCount();
            return true;
        }
    }

    /// <summary>
    /// Writes a resource. A plain Parameters (the $mag-evaluate answer) goes through <see cref="WriteParametersAsync"/>;
    /// any other resource is written whole by the Firely serializer.
    /// </summary>
    public static async Task WriteAsync(Resource resource, FhirFormat format, Stream output, CancellationToken ct)
    {
        if (resource is Parameters { Id: null, Meta: null, ImplicitRules: null, Language: null } p && p.Parameter.Count > 0)
        {
            await WriteParametersAsync(p.Parameter, format, output, ct);
            return;
        }
        if (format == FhirFormat.Json)
        {
            var buffer = JsonBuffers.Get();
            try
            {
                using (var w = new Utf8JsonWriter(buffer, JsonWriter)) JsonOut.Serialize(resource, w);
                await output.WriteAsync(buffer.WrittenMemory, ct);
            }
            finally { JsonBuffers.Return(buffer); }
            return;
        }
        using var xml = new MemoryStream(16 * 1024);
        using (var w = System.Xml.XmlWriter.Create(xml, XmlWriter)) XmlOut.Serialize(resource, w);
        await output.WriteAsync(xml.GetBuffer().AsMemory(0, (int)xml.Length), ct);
    }

    // The same escaping as the Firely serializer's own ToJson (the body is FHIR JSON, never embedded in HTML), quick
    // over long texts with line breaks (see JsonEscaping).
    private static readonly JsonWriterOptions JsonWriter = new() { Encoder = JsonEscaping.Instance };
    private static readonly XmlWriterSettings XmlWriter = new() { Encoding = new UTF8Encoding(false), OmitXmlDeclaration = true, CloseOutput = false };

    /// <summary>
    /// Writes a Parameters whose parts are produced while they are written (a large Bundle's answer is evaluated one
    /// input at a time), each part serialised by the Firely serializer and passed on in chunks, so memory stays bounded
    /// whatever the size of the answer.
    /// </summary>
    public static async Task WriteParametersAsync(IEnumerable<Parameters.ParameterComponent> parts, FhirFormat format, Stream output, CancellationToken ct)
    {
        if (format == FhirFormat.Json)
        {
            var buffer = JsonBuffers.Get();
            try
            {
                using var w = new Utf8JsonWriter(buffer, JsonWriter);
                w.WriteStartObject();
                w.WriteString("resourceType", "Parameters");
                w.WriteStartArray("parameter");
                foreach (var part in parts)
                {
                    JsonOut.Serialize(part, w);
                    w.Flush(); // the writer has handed everything to the buffer, so the buffer may be emptied
                    if (buffer.WrittenCount < ChunkBytes) continue;
                    await output.WriteAsync(buffer.WrittenMemory, ct);
                    buffer.ResetWrittenCount();
                }
                w.WriteEndArray();
                w.WriteEndObject();
                w.Flush();
                await output.WriteAsync(buffer.WrittenMemory, ct);
            }
            finally { JsonBuffers.Return(buffer); }
            return;
        }

        // The Firely XML serializer writes whole documents, so each parameter is one (with the FHIR namespace
        // declared on it, which is the envelope's default namespace anyway) inside the Parameters element.
        using var xml = new MemoryStream(16 * 1024);
        xml.Write("<Parameters xmlns=\"http://hl7.org/fhir\">"u8);
        foreach (var part in parts)
        {
            using (var w = System.Xml.XmlWriter.Create(xml, XmlWriter)) XmlOut.Serialize(part, w, null, "parameter");
            if (xml.Length < ChunkBytes) continue;
            await output.WriteAsync(xml.GetBuffer().AsMemory(0, (int)xml.Length), ct);
            xml.SetLength(0);
        }
        xml.Write("</Parameters>"u8);
        await output.WriteAsync(xml.GetBuffer().AsMemory(0, (int)xml.Length), ct);
    }

    public static string MediaType(FhirFormat format) => format == FhirFormat.Json ? JsonMediaType : XmlMediaType;
}

/// <summary>A parsed body; for a Bundle, the entries that failed to parse (index → message) and were dropped.</summary>
public sealed record ParsedBody(Resource Resource, IReadOnlyDictionary<int, string> BadEntries);
