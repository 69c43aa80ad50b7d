# Multi-stage build: the SDK image builds, a small ASP.NET runtime image runs as a non-root user.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
# ReadyToRun: precompiled code, so start-up does not wait for the JIT (about a third faster to ready; docs/performance.md).
# For the architecture being built (buildx sets TARGETARCH), so an arm64 image carries arm64 native SQLite.
ARG TARGETARCH=amd64
RUN case "$TARGETARCH" in arm64) rid=linux-arm64 ;; *) rid=linux-x64 ;; esac \
 && dotnet publish src/MagCds.Service/MagCds.Service.csproj -c Release -r "$rid" --no-self-contained -p:PublishReadyToRun=true -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app .
# Listen on all interfaces inside the container; publish the port explicitly in compose. ("Urls", not
# ASPNETCORE_URLS: appsettings.json's loopback Urls outranks ASPNETCORE_-prefixed variables, not plain ones.)
ENV Urls=http://0.0.0.0:8080 \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
# The embedded store lives on a volume the non-root user can write (the default, a magcds.db beside the program,
# would be in /app, which belongs to root).
ENV MagCds__Store__SqliteConnectionString="Data Source=/data/magcds.db"
RUN mkdir -p /data && chown app /data
VOLUME ["/data"]
USER app
EXPOSE 8080
ENTRYPOINT ["dotnet", "MagCds.Service.dll"]
