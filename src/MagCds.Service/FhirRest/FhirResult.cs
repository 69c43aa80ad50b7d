using Hl7.Fhir.Model;

namespace MagCds.Service.FhirRest;

/// <summary>Writes a FHIR resource in the negotiated format with the given status.</summary>
public sealed class FhirResult(Resource resource, FhirFormat format, int status = StatusCodes.Status200OK) : IResult
{
    public Resource Resource { get; } = resource;

    public async Task ExecuteAsync(HttpContext http)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = FhirWire.MediaType(format) + "; charset=utf-8";
        await FhirWire.WriteAsync(Resource, format, http.Response.Body, http.RequestAborted);
    }
}
