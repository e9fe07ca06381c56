@echo off
rem Runs cws.ps1 with the given arguments. Double-click friendly: started from Explorer,
rem the window stays open at the end so the result can be read. Every run is logged
rem under %LOCALAPPDATA%\cws\logs\ (see docs/operations.md).
setlocal
set "CWS_PAUSE="
echo %CMDCMDLINE% | findstr /i /c:"%~nx0" >nul && set "CWS_PAUSE=1"
powershell.exe -NoLogo -NoProfile -ExecutionPolicy Bypass -File "%~dp0cws.ps1" %*
set "CWS_EXIT=%ERRORLEVEL%"
if not defined CWS_PAUSE goto :done
echo.
echo Finished with exit code %CWS_EXIT%. Logs: "%LOCALAPPDATA%\cws\logs"
pause
:done
endlocal & exit /b %CWS_EXIT%
