using System.Net.Http.Headers;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Service.FhirRest;

namespace MagCds.Tests.Support;

/// <summary>Sends FHIR bodies in JSON or XML and reads the answer back with the Firely parsers.</summary>
public static class Http
{
    public const string Evaluate = "/fhir/Observation/$mag-evaluate";

    public static HttpContent Body(Resource r, FhirFormat format) =>
        new StringContent(Text(r, format), Encoding.UTF8, FhirWire.MediaType(format));

    /// <summary>A resource as the Firely serializer writes it, in the given format.</summary>
    public static string Text(Resource r, FhirFormat format) => format == FhirFormat.Json ? r.ToJson() : r.ToXml();

    public static HttpContent Raw(string text, string mediaType) =>
        new StringContent(text, new MediaTypeHeaderValue(mediaType));

    public static async Task<(HttpResponseMessage Response, Resource Body)> PostAsync(HttpClient client, string url, HttpContent content, FhirFormat accept)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, url) { Content = content };
        req.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(FhirWire.MediaType(accept)));
        var resp = await client.SendAsync(req);
        return (resp, await ReadAsync(resp));
    }

    public static async Task<Resource> ReadAsync(HttpResponseMessage resp)
    {
        string text = await resp.Content.ReadAsStringAsync();
        var fmt = FhirWire.FromMediaType(resp.Content.Headers.ContentType?.ToString())
                  ?? throw new AssertionException($"Response {(int)resp.StatusCode} is not FHIR: '{resp.Content.Headers.ContentType}' {text}");
        return fmt == FhirFormat.Json ? new FhirJsonDeserializer().DeserializeResource(text) : new FhirXmlDeserializer().DeserializeResource(text);
    }

    /// <summary>The MagCds codes (details.coding) of an OperationOutcome.</summary>
    public static IReadOnlyList<string> Codes(OperationOutcome oo) =>
        oo.Issue.SelectMany(i => i.Details?.Coding ?? []).Where(c => c.System == MagCds.Core.CanonicalUrls.Default.OutcomeSystem).Select(c => c.Code!).ToList();
}
