// POST anything: the body is read to the end and a small fixed JSON answer is written; nothing else happens.
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
var app = builder.Build();
app.MapPost("/{**path}", async (HttpRequest req) =>
{
    await req.Body.CopyToAsync(Stream.Null);
    return Results.Text("""{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}""", "application/fhir+json");
});
app.Run();
